//! `order-svc generate`: orders as JSON lines or one JSON array, to a file or standard output.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::OutputFormat;
use crate::generate::Generator;
use crate::settings::GenerateSettings;

/// Below this many orders a run is too short for a progress bar to help.
const PROGRESS_MIN_COUNT: u64 = 10_000;

pub fn run(args: GenerateSettings) -> anyhow::Result<()> {
    args.generator.log_seed();
    let options = args.generator.options.clone();
    let out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let progress = (io::stderr().is_terminal() && args.count >= PROGRESS_MIN_COUNT).then(|| {
        ProgressBar::new(args.count).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} orders, {per_sec}, eta {eta}")
                .expect("a valid template"),
        )
    });

    let mut generator = Generator::new(options);
    let mut write = |out: &mut BufWriter<Box<dyn Write>>| -> io::Result<()> {
        if args.format == OutputFormat::Array {
            out.write_all(b"[")?;
        }
        for i in 0..args.count {
            let message = generator.next_message();
            if args.format == OutputFormat::Array {
                out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
            }
            out.write_all(&message.bytes)?;
            if args.format == OutputFormat::Jsonl {
                out.write_all(b"\n")?;
            }
            if let Some(bar) = &progress {
                bar.inc(1);
            }
        }
        if args.format == OutputFormat::Array {
            out.write_all(b"\n]\n")?;
        }
        out.flush()
    };
    match write(&mut out) {
        Ok(()) => {}
        // `generate | head` closes the pipe early; that is the reader's choice, not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("cannot write the orders"),
    }
    if let Some(bar) = progress {
        bar.finish();
    }
    Ok(())
}
