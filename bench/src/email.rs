//! `inbox bench email`: `parse_email` over the corpus, timed per message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use inbox_connectors::email::parse::parse_email;
use inbox_connectors::email::sample::{mail_with_attachment, noise, read_corpus};
use inbox_core::ids::ChannelId;

use crate::ms;

#[derive(Debug, Args)]
pub struct EmailArgs {
    /// Passes over the corpus.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Directory of `.eml` files.
    #[arg(long, default_value = "tests/fixtures/mail/corpus")]
    corpus: PathBuf,
}

pub fn run(args: &EmailArgs) -> anyhow::Result<()> {
    let corpus: Vec<(String, Vec<u8>)> = read_corpus(&args.corpus)
        .with_context(|| format!("--corpus {}", args.corpus.display()))?
        .into_iter()
        .collect();
    anyhow::ensure!(
        !corpus.is_empty(),
        "no .eml files in {}",
        args.corpus.display()
    );
    let repeat = args.repeat.max(1);
    let bytes: usize = corpus.iter().map(|(_, raw)| raw.len()).sum();
    println!(
        "bench email: {} messages ({:.2} MB) from {}, {repeat} passes",
        corpus.len(),
        bytes as f64 / 1e6,
        args.corpus.display()
    );

    let channel = ChannelId::new();
    let (mut parsed, mut rejected) = (0, 0);
    let mut per_message: Vec<Duration> = Vec::with_capacity(corpus.len() * repeat);
    let mut per_file = vec![Duration::ZERO; corpus.len()];
    let started = Instant::now();
    for pass in 0..repeat {
        for (i, (_, raw)) in corpus.iter().enumerate() {
            let t = Instant::now();
            let result = std::hint::black_box(parse_email(raw, channel, Utc::now()));
            let took = t.elapsed();
            per_message.push(took);
            per_file[i] += took;
            if pass == 0 {
                match result {
                    Ok(_) => parsed += 1,
                    Err(_) => rejected += 1,
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    per_message.sort_unstable();
    let pick = |q: f64| per_message[((per_message.len() - 1) as f64 * q) as usize];
    let messages = (corpus.len() * repeat) as f64;
    println!(
        "  corpus:     {:>9.0} msg/s {:>8.1} MB/s   p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms   ({parsed} parsed, {rejected} rejected)",
        messages / elapsed,
        (bytes * repeat) as f64 / 1e6 / elapsed,
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(pick(1.0)),
    );
    let mut slowest: Vec<(Duration, &str, usize)> = per_file
        .iter()
        .zip(&corpus)
        .map(|(total, (name, raw))| (*total / repeat as u32, name.as_str(), raw.len()))
        .collect();
    slowest.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
    for (took, name, len) in slowest.iter().take(3) {
        println!(
            "  slowest:    {name} ({:.1} KB): {:.3} ms",
            *len as f64 / 1e3,
            ms(*took)
        );
    }

    let big = mail_with_attachment(&noise(10 * 1024 * 1024));
    let passes = repeat.clamp(1, 5);
    let started = Instant::now();
    for _ in 0..passes {
        let parsed = parse_email(&big, channel, Utc::now())
            .map_err(|e| anyhow::anyhow!("the 10 MB mail does not parse: {e}"))?;
        std::hint::black_box(parsed);
    }
    let each = started.elapsed().as_secs_f64() / passes as f64;
    println!(
        "  10 MB attachment ({:.1} MB of MIME): {:>7.1} MB/s   {:.0} ms per message",
        big.len() as f64 / 1e6,
        big.len() as f64 / 1e6 / each,
        each * 1e3
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_bench_runs_on_the_corpus() {
        use clap::Parser;

        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            bench: crate::BenchCommand,
        }
        let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mail/corpus");
        let cli = Cli::try_parse_from(["bench", "email", "--repeat", "1", "--corpus", corpus])
            .unwrap_or_else(|e| panic!("{e}"));
        let crate::BenchCommand::Email(args) = cli.bench else {
            panic!("not the email bench: {cli:?}");
        };
        run(&args).unwrap_or_else(|e| panic!("{e:#}"));
    }
}
