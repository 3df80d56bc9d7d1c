//! `inbox bench web`: seeds a large inbox straight into the tables, starts the real application on
//! it and measures the agents' API — list, open a conversation, search — under an open-loop load:
//! operations are issued on a fixed schedule whatever the answers, and each latency runs from the
//! operation's scheduled time, so a stall shows up in the figures instead of slowing the load down
//! (no coordinated omission). The same list and open queries run directly against the Store in the
//! same run, as the baseline that shows what HTTP, auth and JSON add.

mod load;
mod seed;
mod stats;
mod words;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use inbox_app::app::Application;
use inbox_app::config::Config;
use inbox_core::store::Store;
use inbox_core::store::test_support::{DEFAULT_TEST_SERVER, ScratchDatabase};
use tokio_util::sync::CancellationToken;

use self::load::load;
use self::seed::{deep_cursors, seed};
pub(crate) use self::stats::quantile;
use self::stats::{load_average, parse_duration};
use crate::StoreKind;

/// Conversations per page of the list, as the web inbox asks for them.
pub(crate) const LIST_PAGE: u32 = 25;
/// Messages per page when a conversation is opened.
pub(crate) const HISTORY_PAGE: u32 = 50;
/// Hits per search page (the API's default).
pub(crate) const SEARCH_PAGE: u32 = 25;
/// Deepest list page the load follows `next_cursor` to.
pub(crate) const LIST_DEPTH: usize = 6;
/// Messages per seeding transaction.
pub(crate) const SEED_BATCH: usize = 10_000;
/// Targets of issue 5 (p99, milliseconds).
pub(crate) const LIST_TARGET_MS: f64 = 20.0;
pub(crate) const OPEN_BIG_TARGET_MS: f64 = 50.0;

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Backend. postgres: a throwaway database on the server of INBOX_DATABASE_URL, or on
    /// postgres://postgres@127.0.0.1:5432 without it.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Conversations to seed.
    #[arg(long, default_value_t = 100_000)]
    conversations: usize,
    /// Messages to seed, over all conversations.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Messages of the one big conversation (part of --messages).
    #[arg(long, default_value_t = 100_000)]
    big: usize,
    /// Operations per second, issued on a fixed schedule whatever the answers (open loop).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Length of each measured run (20s, 500ms, 2m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Most operations in flight; later ones wait for a slot, and the wait counts in their latency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Unmeasured mixed load before the measured runs (caches, connection pools).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep the seeded database (and print where it is) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

pub async fn run(config: &Config, args: &WebArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.conversations >= 2,
        "--conversations must be at least 2"
    );
    anyhow::ensure!(args.big >= 1, "--big must be at least 1");
    anyhow::ensure!(
        args.messages >= args.big + args.conversations - 1,
        "--messages must cover --big plus one message for each other conversation"
    );
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be positive"
    );
    println!(
        "bench web: {} conversations, {} messages ({} in the big one), store {:?}; \
         {}/s for {:?} per run, at most {} in flight",
        args.conversations,
        args.messages,
        args.big,
        args.store,
        args.rate,
        args.duration,
        args.concurrency
    );

    println!(
        "  machine: {} CPUs, load average {}",
        inbox_app::config::cpus(),
        load_average()
    );
    let target = Target::create(config, args.store).await?;
    let outcome = measure(&target, args).await;
    target.finish(args.keep).await?;
    outcome
}

pub(crate) async fn measure(target: &Target, args: &WebArgs) -> anyhow::Result<()> {
    let store = Store::open(&target.config.store()).await?;
    let seeded = seed(&store, args).await?;
    let deep = deep_cursors(&store, seeded.big, args.big).await?;

    let server = Server::start(target.config.clone()).await?;
    let result = load(&store, &seeded, &deep, &server, args).await;
    server.stop().await;
    store.close().await;
    result
}

// ---------------------------------------------------------------------------------------------
// The database of one run.

/// A data dir (SQLite file, blobs) and, for PostgreSQL, a throwaway database.
pub(crate) struct Target {
    pub(crate) config: Config,
    dir: tempfile::TempDir,
    scratch: Option<ScratchDatabase>,
}

impl Target {
    pub(crate) async fn create(config: &Config, kind: StoreKind) -> anyhow::Result<Target> {
        let dir = tempfile::Builder::new()
            .prefix("inbox-bench-web-")
            .tempdir()?;
        let mut app = Config {
            data_dir: dir.path().to_path_buf(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ops_listen: None,
            // The embedded mode: the in-process bus, whatever the environment says.
            kafka: None,
            database_url: None,
            public_url: None,
            ..config.clone()
        };
        let mut scratch = None;
        if kind == StoreKind::Postgres {
            let server = config
                .database_url
                .clone()
                .unwrap_or_else(|| DEFAULT_TEST_SERVER.to_owned());
            let db = ScratchDatabase::create(&server, "inbox_bench_web").await?;
            app.database_url = Some(db.url().to_owned());
            scratch = Some(db);
        }
        Ok(Target {
            config: app,
            dir,
            scratch,
        })
    }

    /// A database kept by an earlier run (`--keep`): a data directory, or a PostgreSQL URL. It
    /// is left as it is at the end.
    pub(crate) fn reuse(config: &Config, kept: &str) -> anyhow::Result<Target> {
        let dir = tempfile::Builder::new()
            .prefix("inbox-bench-web-")
            .tempdir()?;
        let postgres = kept.starts_with("postgres://") || kept.starts_with("postgresql://");
        let app = Config {
            data_dir: if postgres {
                dir.path().to_path_buf()
            } else {
                std::path::PathBuf::from(kept)
            },
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ops_listen: None,
            kafka: None,
            database_url: postgres.then(|| kept.to_owned()),
            public_url: None,
            ..config.clone()
        };
        Ok(Target {
            config: app,
            dir,
            scratch: None,
        })
    }

    pub(crate) async fn finish(self, keep: bool) -> anyhow::Result<()> {
        if keep {
            let dir = self.dir.keep();
            match &self.config.database_url {
                Some(url) => println!("kept: database {url} (data dir {})", dir.display()),
                None => println!("kept: {}", dir.join("inbox.db").display()),
            }
            return Ok(());
        }
        if let Some(scratch) = self.scratch {
            scratch.drop_database().await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The application under test, on a runtime of its own so the load generator's timers are not
// delayed by the server's tasks (both share the machine's cores).

pub(crate) struct Server {
    pub(crate) base: String,
    shutdown: CancellationToken,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub(crate) async fn start(config: Config) -> anyhow::Result<Server> {
        let (ready, started) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("bench-web-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("bench-web-server")
                    .build()?;
                runtime.block_on(async move {
                    let app = match Application::build(config).await {
                        Ok(app) => app,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = ready.send(Ok((app.local_addr(), app.shutdown_token())));
                    app.run_until_stopped().await
                })
            })?;
        let (addr, shutdown) = started
            .await
            .context("the server thread ended before it started")??;
        let server = Server {
            base: format!("http://{addr}"),
            shutdown,
            thread,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("{}/readyz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                server.stop().await;
                anyhow::bail!("the application did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_web_bench_runs_on_a_small_inbox() {
        let args = WebArgs {
            store: StoreKind::Sqlite,
            conversations: 30,
            messages: 400,
            big: 200,
            rate: 50.0,
            duration: Duration::from_millis(200),
            concurrency: 4,
            warmup: Duration::ZERO,
            keep: false,
        };
        run(&Config::default(), &args)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}
