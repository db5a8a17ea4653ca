//! The dead-letter ledger: which messages were already sent to the dead-letter topic, so
//! that a replay sends none twice, and what identifies each (key, order uid, time) for the
//! people who ask why an order never arrived. It lives beside the orders, in `dead_letters`.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::metrics::Op;
use super::pool::{PgStore, db_error};
use crate::domain::message::{DeadLetter, MessageId};
use crate::domain::ports::{DeadLetterLedger, StoreError};

/// The most bytes of a dead letter's key kept in the ledger.
pub const MAX_STORED_KEY: usize = 256;

const DEAD_LETTERED: &str = r#"
SELECT t.i::int8 FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::bytea[])
         WITH ORDINALITY AS t(topic, partition, off, hash, i)
JOIN dead_letters d
  ON d.topic = t.topic AND d.partition = t.partition AND d."offset" = t.off
 AND d.payload_hash = t.hash
"#;

const RECORD_DEAD_LETTERS: &str = r#"
INSERT INTO dead_letters (topic, partition, "offset", payload_hash, reason, detail,
                          message_key, order_uid, message_time, message_key_sha256)
SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::bytea[], $5::text[], $6::text[],
                     $7::bytea[], $8::text[], $9::timestamptz[], $10::bytea[])
ON CONFLICT DO NOTHING
"#;

impl DeadLetterLedger for PgStore {
    async fn dead_lettered(&self, ids: &[MessageId]) -> Result<Vec<bool>, StoreError> {
        self.timed(Op::DeadLettered, async {
            let (topics, partitions, offsets, hashes) = id_columns(ids.iter());
            let mut client = self.conn().await?;
            let rows = client
                .query(DEAD_LETTERED, &[&topics, &partitions, &offsets, &hashes])
                .await
                .map_err(db_error)?;
            let mut seen = vec![false; ids.len()];
            for row in rows {
                // WITH ORDINALITY counts from 1.
                let i: i64 = row.get(0);
                if let Some(slot) = seen.get_mut((i - 1) as usize) {
                    *slot = true;
                }
            }
            client.keep();
            Ok(seen)
        })
        .await
    }

    async fn record_dead_letters(&self, letters: &[DeadLetter<'_>]) -> Result<(), StoreError> {
        self.timed(Op::RecordDeadLetters, async {
            let (topics, partitions, offsets, hashes) = id_columns(letters.iter().map(|l| &l.id));
            let reasons: Vec<&str> = letters.iter().map(|l| l.reason.code()).collect();
            // PostgreSQL text cannot hold NUL, and a detail may quote the message.
            let details: Vec<String> = letters
                .iter()
                .map(|l| l.detail.replace('\0', "\\0"))
                .collect();
            // A key is data of any size: kept whole up to MAX_STORED_KEY bytes, else its
            // first MAX_STORED_KEY bytes and the SHA-256 of the whole (migrations/V9).
            let keys: Vec<Option<&[u8]>> = letters
                .iter()
                .map(|l| {
                    l.message
                        .key
                        .as_deref()
                        .map(|k| &k[..k.len().min(MAX_STORED_KEY)])
                })
                .collect();
            let key_hashes: Vec<Option<Vec<u8>>> = letters
                .iter()
                .map(|l| {
                    l.message
                        .key
                        .as_deref()
                        .filter(|k| k.len() > MAX_STORED_KEY)
                        .map(|k| Sha256::digest(k).to_vec())
                })
                .collect();
            let uids: Vec<Option<&str>> = letters.iter().map(|l| l.order_uid.as_deref()).collect();
            let times: Vec<Option<DateTime<Utc>>> = letters
                .iter()
                .map(|l| {
                    l.message
                        .timestamp_ms
                        .and_then(DateTime::from_timestamp_millis)
                })
                .collect();
            let mut client = self.conn().await?;
            client
                .execute(
                    RECORD_DEAD_LETTERS,
                    &[
                        &topics,
                        &partitions,
                        &offsets,
                        &hashes,
                        &reasons,
                        &details,
                        &keys,
                        &uids,
                        &times,
                        &key_hashes,
                    ],
                )
                .await
                .map_err(db_error)?;
            client.keep();
            Ok(())
        })
        .await
    }
}

type IdColumns<'a> = (Vec<&'a str>, Vec<i32>, Vec<i64>, Vec<&'a [u8]>);

fn id_columns<'a>(ids: impl Iterator<Item = &'a MessageId>) -> IdColumns<'a> {
    let mut cols: IdColumns<'a> = Default::default();
    for id in ids {
        cols.0.push(&id.topic);
        cols.1.push(id.partition);
        cols.2.push(id.offset);
        cols.3.push(&id.payload_hash);
    }
    cols
}

impl PgStore {
    /// How many letters the ledger records as sent before `until` (for `redrive` to compare
    /// with what the topic gave).
    pub async fn recorded_before(&self, until: DateTime<Utc>) -> Result<i64, StoreError> {
        self.timed(Op::DeadLettered, async {
            let mut client = self.conn().await?;
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM dead_letters WHERE sent_at <= $1",
                    &[&until],
                )
                .await
                .map_err(db_error)?
                .get(0);
            client.keep();
            Ok(n)
        })
        .await
    }
}
