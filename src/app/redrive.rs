//! `order-svc redrive`: the dead-letter topic read to its end, the selected letters sent
//! back to the orders topic as their originals, a line per letter sent (or that would be,
//! with `--dry-run`), and a summary. Exits non-zero when a send failed.

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::adapters::kafka::redrive::{DeadLetterReader, Resender};
use crate::adapters::postgres::pool::{PgStore, pool};
use crate::domain::message::MessageId;
use crate::domain::ports::DeadLetterLedger;
use crate::domain::redrive::{Redrive, Resend, Summary, Verdict};
use crate::settings::RedriveSettings;

pub async fn run(settings: RedriveSettings) -> anyhow::Result<()> {
    let kafka = &settings.kafka;
    kafka.connection.warn_weaknesses();
    // The ledger `serve` keeps (one connection): which letters order-svc really sent.
    let timeout = std::time::Duration::from_secs(30);
    let ledger = PgStore::new(pool(&settings.url, 1, timeout)?, timeout);
    let started = chrono::Utc::now();
    // Distinct origins read that the ledger records, to compare with its count at the end.
    let mut recorded_read = std::collections::HashSet::new();
    let mut reader = DeadLetterReader::open(&kafka.connection, &settings.dlq_topic)?;
    let resender = if settings.dry_run {
        None
    } else {
        Some(Resender::new(&kafka.connection, &kafka.topic)?)
    };
    let mut redrive = Redrive::new(settings.selection.clone());
    let mut summary = Summary::default();
    let mut deliveries = FuturesUnordered::new();
    while let Some(letter) = reader.next().await? {
        summary.read += 1;
        let recorded = match letter.origin() {
            Some(origin) => {
                let id = MessageId {
                    topic: origin.topic.clone(),
                    partition: origin.partition,
                    offset: origin.offset,
                    payload_hash: Sha256::digest(letter.payload.as_deref().unwrap_or_default())
                        .into(),
                };
                let recorded = ledger
                    .dead_lettered(std::slice::from_ref(&id))
                    .await
                    .context("cannot read the dead-letter ledger (DATABASE_URL)")?
                    .first()
                    .copied()
                    .unwrap_or(false);
                if recorded {
                    recorded_read.insert(origin);
                }
                recorded
            }
            None => false,
        };
        let resend = match redrive.judge(letter, recorded) {
            Verdict::Send(resend) => resend,
            skipped => {
                match &skipped {
                    Verdict::Truncated(origin) => println!(
                        "skipped {}: truncated, the original is not in the letter",
                        terminal_safe(&origin.to_string())
                    ),
                    Verdict::Unrecorded(origin) => println!(
                        "skipped {}: the ledger holds no such letter (not written by order-svc)",
                        terminal_safe(&origin.to_string())
                    ),
                    _ => {}
                }
                summary.skipped(&skipped);
                continue;
            }
        };
        let Some(resender) = &resender else {
            println!("would send {}", describe(&resend));
            continue;
        };
        match resender.send(&resend).await {
            Ok(delivery) => deliveries.push(async move { (delivery.await, resend) }),
            Err(e) => {
                eprintln!("failed {}: {e}", describe(&resend));
                summary.failed += 1;
            }
        }
        // Reports as they come, so that the memory held is what is in flight.
        while let Some(Some((report, resend))) = futures::FutureExt::now_or_never(deliveries.next())
        {
            count(report, &resend, &mut summary);
        }
    }
    while let Some((report, resend)) = deliveries.next().await {
        count(report, &resend, &mut summary);
    }
    if let Some(resender) = &resender {
        resender.flush();
    }
    let Summary {
        read,
        sent,
        failed,
        not_selected,
        truncated,
        repeated,
        foreign,
        unrecorded,
    } = summary;
    let verb = if settings.dry_run {
        "would send"
    } else {
        "sent"
    };
    let would = if settings.dry_run {
        read - not_selected - truncated - repeated - foreign - unrecorded
    } else {
        sent
    };
    println!(
        "read {read} dead letters from {}: {verb} {would} to {}, failed {failed}; skipped \
         {not_selected} not selected, {truncated} truncated, {repeated} repeated, {foreign} \
         without an origin, {unrecorded} not in the ledger",
        settings.dlq_topic, kafka.topic
    );
    // What the topic gave against what the ledger says was set aside before the run.
    let in_ledger = ledger
        .recorded_before(started)
        .await
        .context("cannot count the dead-letter ledger (DATABASE_URL)")?;
    let read_recorded = recorded_read.len() as i64;
    if read_recorded < in_ledger {
        println!(
            "the ledger holds {in_ledger} letters set aside before this run; {read_recorded} of \
             them were read from {}: {} not read (removed by the topic's retention, or not \
             given by the broker)",
            settings.dlq_topic,
            in_ledger - read_recorded
        );
    }
    if reader.wrong_ends() > 0 {
        println!(
            "the broker gave a wrong end offset for {} partition(s) of {}; each was read to \
             where the broker said it had nothing more",
            reader.wrong_ends(),
            settings.dlq_topic
        );
    }
    if failed > 0 {
        // Running again is safe: what this run sent arrives again as an exact copy, which
        // ingest counts as a duplicate and stores once.
        anyhow::bail!("{failed} letter(s) could not be sent back; run again to retry them");
    }
    Ok(())
}

/// A letter as the operator's terminal shows it. Origin, reason and key are whatever the
/// letter carries (a producer may write to the dead-letter topic), so every control
/// character is escaped: none reaches the terminal to move its cursor, retitle it or write
/// its clipboard.
fn describe(resend: &Resend) -> String {
    let key = resend.key.as_deref().map_or_else(
        || "none".to_owned(),
        |k| String::from_utf8_lossy(k).into_owned(),
    );
    terminal_safe(&format!(
        "{} ({}), key {key}, {} bytes",
        resend.origin,
        resend.reason,
        resend.payload.as_ref().map_or(0, Vec::len)
    ))
}

/// `text` with every control character (C0, DEL, C1) and every bidirectional override
/// written as a Rust escape (`\u{1b}`), and backslashes doubled so an escape cannot be
/// forged.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

type Report = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

fn count(report: Report, resend: &Resend, summary: &mut Summary) {
    match report {
        Ok(Ok(_)) => {
            println!("sent {}", describe(resend));
            summary.sent += 1;
        }
        Ok(Err((e, _))) => {
            eprintln!("failed {}: {e}", describe(resend));
            summary.failed += 1;
        }
        Err(_) => {
            eprintln!("failed {}: the producer went away", describe(resend));
            summary.failed += 1;
        }
    }
}
