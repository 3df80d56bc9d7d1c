//! The open-loop load: list, open and search requests on a fixed schedule, over HTTP and
//! straight against the Store (the baseline).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use inbox_core::ids::{AgentId, ConversationId};
use inbox_core::model::ConversationStatus;
use inbox_core::store::{ConversationFilter, PageCursor, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::seed::Seeded;
use super::stats::{Stats, load_average, quantile};
use super::{
    HISTORY_PAGE, LIST_DEPTH, LIST_PAGE, LIST_TARGET_MS, OPEN_BIG_TARGET_MS, SEARCH_PAGE, Server,
    WebArgs,
};
use crate::ms;

// ---------------------------------------------------------------------------------------------
// The load.

/// A list request: a filter and, past the first page, the cursor the API handed out.
#[derive(Debug, Clone)]
pub(crate) struct ListRequest {
    pub(crate) filter: usize,
    pub(crate) cursor: Option<String>,
}

/// List filters as query strings, and as the Store takes them (`me` is the bench agent).
pub(crate) const FILTERS: [&str; 4] = [
    "",
    "&status=open",
    "&assignee=none",
    "&status=open&assignee=me",
];

pub(crate) fn store_filter(filter: usize, me: AgentId) -> ConversationFilter {
    match filter {
        1 => ConversationFilter {
            status: Some(ConversationStatus::Open),
            ..ConversationFilter::default()
        },
        2 => ConversationFilter {
            assignee: Some(None),
            ..ConversationFilter::default()
        },
        3 => ConversationFilter {
            status: Some(ConversationStatus::Open),
            assignee: Some(Some(me)),
            ..ConversationFilter::default()
        },
        _ => ConversationFilter::default(),
    }
}

/// Everything an operation needs, shared by all of them.
#[derive(Debug)]
pub(crate) struct Load {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
    pub(crate) store: Store,
    pub(crate) me: AgentId,
    pub(crate) conversations: Vec<ConversationId>,
    pub(crate) big: ConversationId,
    /// `before=` cursors deep in the big conversation.
    pub(crate) deep: Vec<String>,
    /// Cursors of pages 2..=LIST_DEPTH, per filter.
    pub(crate) list_cursors: Vec<Vec<String>>,
    pub(crate) search_terms: Vec<(&'static str, String)>,
    pub(crate) search_available: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    List,
    Open,
    OpenBig,
    OpenBigDeep,
    Search,
    /// 70 % list, 20 % open, 10 % search (list when search is not available).
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Http,
    Store,
}

impl Load {
    pub(crate) fn pick_list(&self, rng: &mut StdRng) -> ListRequest {
        let filter = rng.random_range(0..FILTERS.len());
        let pages = &self.list_cursors[filter];
        // Six in ten requests are a first page, the others a page further down.
        let cursor = (rng.random_range(0..10) >= 6 && !pages.is_empty())
            .then(|| pages[rng.random_range(0..pages.len())].clone());
        ListRequest { filter, cursor }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<(), String> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        // The whole body: a response is only useful once it has arrived.
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            let shown = &body[..body.len().min(200)];
            Err(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(shown)
            ))
        }
    }

    pub(crate) async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        Ok(response.json().await?)
    }

    pub(crate) async fn list(&self, request: ListRequest, via: Via) -> Result<(), String> {
        match via {
            Via::Http => {
                let mut path = format!(
                    "/api/v1/conversations?limit={LIST_PAGE}{}",
                    FILTERS[request.filter]
                );
                if let Some(cursor) = &request.cursor {
                    path.push_str("&cursor=");
                    path.push_str(cursor);
                }
                self.get(&path).await
            }
            Via::Store => {
                let cursor = request.cursor.as_deref().and_then(PageCursor::decode);
                self.store
                    .list_conversations(
                        &store_filter(request.filter, self.me),
                        cursor.as_ref(),
                        LIST_PAGE,
                    )
                    .await
                    .map(drop)
                    .map_err(|e| format!("list: {e}"))
            }
        }
    }

    /// Opening a conversation: the conversation, then the newest page of its history (or the
    /// page before `before`), one after the other as the conversation view loads them.
    pub(crate) async fn open(
        &self,
        id: ConversationId,
        before: Option<&str>,
        via: Via,
    ) -> Result<(), String> {
        match via {
            Via::Http => {
                self.get(&format!("/api/v1/conversations/{id}")).await?;
                let mut path = format!("/api/v1/conversations/{id}/messages?limit={HISTORY_PAGE}");
                if let Some(before) = before {
                    path.push_str("&before=");
                    path.push_str(before);
                }
                self.get(&path).await
            }
            Via::Store => {
                let fail = |e: inbox_core::store::StoreError| format!("open {id}: {e}");
                self.store
                    .conversation(id)
                    .await
                    .map_err(fail)?
                    .ok_or_else(|| format!("open {id}: not found"))?;
                let before = before.and_then(PageCursor::decode);
                self.store
                    .messages(id, before.as_ref(), HISTORY_PAGE)
                    .await
                    .map(drop)
                    .map_err(fail)
            }
        }
    }

    pub(crate) async fn search(&self, term: &str, via: Via) -> Result<(), String> {
        match via {
            Via::Http => {
                self.get(&format!("/api/v1/search?q={}", term.replace(' ', "+")))
                    .await
            }
            Via::Store => self
                .store
                .search_messages(term, None, SEARCH_PAGE)
                .await
                .map(drop)
                .map_err(|e| format!("search {term}: {e}")),
        }
    }

    /// Runs operation number `k` of a run; the choices depend only on `k`, so the HTTP and the
    /// Store runs of a scenario make the same requests.
    pub(crate) async fn run(
        self: Arc<Self>,
        op: Op,
        via: Via,
        k: u64,
    ) -> (&'static str, Result<(), String>) {
        let mut rng = StdRng::seed_from_u64(k.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let op = match op {
            Op::Mixed => match rng.random_range(0..10) {
                0..7 => Op::List,
                7..9 => Op::Open,
                _ if self.search_available => Op::Search,
                _ => Op::List,
            },
            op => op,
        };
        match op {
            Op::List => {
                let request = self.pick_list(&mut rng);
                let kind = LIST_KINDS[usize::from(request.cursor.is_some())];
                (kind, self.list(request, via).await)
            }
            Op::Open => {
                let id = self.conversations[rng.random_range(0..self.conversations.len())];
                ("open", self.open(id, None, via).await)
            }
            Op::OpenBig => ("open big", self.open(self.big, None, via).await),
            Op::OpenBigDeep => {
                let before = (!self.deep.is_empty())
                    .then(|| self.deep[rng.random_range(0..self.deep.len())].as_str());
                ("open big deep", self.open(self.big, before, via).await)
            }
            Op::Search | Op::Mixed => {
                let (kind, term) = &self.search_terms[rng.random_range(0..self.search_terms.len())];
                (*kind, self.search(term, via).await)
            }
        }
    }
}

pub(crate) async fn load(
    store: &Store,
    seeded: &Seeded,
    deep: &[String],
    server: &Server,
    args: &WebArgs,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut load = Load {
        client,
        base: server.base.clone(),
        token: seeded.token.clone(),
        store: store.clone(),
        me: seeded.agent,
        conversations: seeded.conversations.clone(),
        big: seeded.big,
        deep: deep.to_vec(),
        list_cursors: Vec::new(),
        search_terms: search_terms(),
        search_available: false,
    };

    // Follow next_cursor down the list for every filter, as an agent scrolling would.
    for filter in FILTERS {
        let mut cursors = Vec::new();
        let mut path = format!("/api/v1/conversations?limit={LIST_PAGE}{filter}");
        for _ in 1..LIST_DEPTH {
            let page = load.get_json(&path).await?;
            let Some(next) = page["next_cursor"].as_str() else {
                break;
            };
            cursors.push(next.to_owned());
            path = format!("/api/v1/conversations?limit={LIST_PAGE}{filter}&cursor={next}");
        }
        load.list_cursors.push(cursors);
    }
    let first = load
        .get_json(&format!(
            "/api/v1/conversations/{}/messages?limit={HISTORY_PAGE}",
            seeded.big
        ))
        .await?;
    let items = first["items"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        items == HISTORY_PAGE.min(args.big as u32) as usize,
        "the big conversation's first page has {items} messages"
    );

    let probe = load
        .client
        .get(format!("{}/api/v1/search?q=refund", load.base))
        .bearer_auth(&load.token)
        .send()
        .await?;
    load.search_available = probe.status() != reqwest::StatusCode::NOT_FOUND;
    if !load.search_available {
        println!("  search: not available (GET /api/v1/search answers 404); left out of the runs");
    }
    let load = Arc::new(load);

    if !args.warmup.is_zero() {
        open_loop(
            args.rate,
            args.warmup,
            args.concurrency,
            op(&load, Op::Mixed, Via::Http),
        )
        .await;
    }

    println!(
        "\n  Open loop at {}/s for {:?} each; latency in ms from each operation's scheduled time. \
         An open is two requests (the conversation, then {HISTORY_PAGE} messages); \
         peak = most operations in flight.",
        args.rate, args.duration
    );
    println!(
        "  {:<34} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5}  target",
        "scenario", "ops", "errors", "ops/s", "p50", "p90", "p99", "max", "peak"
    );
    let big = args.big;
    let mut verdicts = Vec::new();
    // Paging deep into the big history runs last: when it cannot keep up, its backlog (and the
    // cache it churns) must not spill into the other figures.
    let search = load.search_available;
    let scenarios = [
        (true, Op::List, Via::Http, "list".to_owned()),
        (
            true,
            Op::Open,
            Via::Http,
            "open (random conversation)".to_owned(),
        ),
        (
            true,
            Op::OpenBig,
            Via::Http,
            format!("open big ({big} msgs), newest"),
        ),
        (search, Op::Search, Via::Http, "search".to_owned()),
        (true, Op::Mixed, Via::Http, "mixed 70/20/10".to_owned()),
        (true, Op::List, Via::Store, "store: list".to_owned()),
        (
            true,
            Op::Open,
            Via::Store,
            "store: open (random)".to_owned(),
        ),
        (
            true,
            Op::OpenBig,
            Via::Store,
            "store: open big, newest".to_owned(),
        ),
        (search, Op::Search, Via::Store, "store: search".to_owned()),
        (
            true,
            Op::OpenBigDeep,
            Via::Http,
            format!("open big ({big} msgs), before="),
        ),
        (
            true,
            Op::OpenBigDeep,
            Via::Store,
            "store: open big, before=".to_owned(),
        ),
    ]
    .into_iter()
    .filter_map(|(wanted, op, via, label)| wanted.then_some((op, via, label)));
    let mut lag = Vec::new();
    for (op_kind, via, label) in scenarios {
        let run = open_loop(
            args.rate,
            args.duration,
            args.concurrency,
            op(&load, op_kind, via),
        )
        .await;
        lag.extend(run.lag.iter().copied());
        let target = match (op_kind, via) {
            (Op::List, Via::Http) => Some(LIST_TARGET_MS),
            (Op::OpenBig | Op::OpenBigDeep, Via::Http) => Some(OPEN_BIG_TARGET_MS),
            _ => None,
        };
        let all = Stats::of(&run, None);
        all.print(&label, target);
        if let Some(target) = target {
            verdicts.push((label.clone(), target, all.clone()));
        }
        let parts: &[&str] = match op_kind {
            Op::Mixed => &["list", "open", "search"],
            Op::Search => &SEARCH_KINDS,
            Op::List => &LIST_KINDS,
            _ => &[],
        };
        for &kind in parts {
            let part = Stats::of(&run, Some(kind));
            if part.ops > 0 {
                let target = (op_kind == Op::Mixed && kind == "list").then_some(LIST_TARGET_MS);
                let label = match op_kind {
                    Op::Mixed => format!("mixed: {kind}"),
                    _ => kind.split_once(": ").map_or(kind, |(_, k)| k).to_owned(),
                };
                part.print(&format!("  {label}"), target);
                if let Some(target) = target {
                    verdicts.push((label, target, part));
                }
            }
        }
        if let Some(error) = &all.first_error {
            println!("    first error: {error}");
        }
    }
    if !load.search_available {
        println!("  {:<34} not available (404)", "search");
    }
    lag.sort_unstable();
    println!(
        "  (operations started {:.3} ms after their scheduled time at p50, {:.3} ms at p99; \
         included in the latencies)",
        ms(quantile(&lag, 0.5)),
        ms(quantile(&lag, 0.99))
    );

    println!("  load average at the end: {}", load_average());
    println!("\n  Targets (p99, at {}/s):", args.rate);
    for (label, target, stats) in verdicts {
        println!(
            "    {:<34} p99 {:>7.2} ms ≤ {target} ms: {}",
            label,
            stats.p99,
            if stats.met(target) { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

pub(crate) fn op(load: &Arc<Load>, op: Op, via: Via) -> impl FnMut(u64) -> OpFuture + use<> {
    let load = load.clone();
    move |k| {
        let load = load.clone();
        Box::pin(async move {
            let (kind, result) = load.run(op, via, k).await;
            (kind, result.err())
        })
    }
}

/// Kinds of list request: the first page, or one further down through `next_cursor`.
pub(crate) const LIST_KINDS: [&str; 2] = ["list: first page", "list: pages 2-6"];

/// Kinds of search, by how many messages match (at 1M messages).
pub(crate) const SEARCH_KINDS: [&str; 4] = [
    "search: common word",
    "search: rarer word",
    "search: two words",
    "search: order number",
];

/// Search terms of each of [`SEARCH_KINDS`]: words in 11–66 % of the messages, words in 2–5 %,
/// two words together (0.25–2.5 %), and order numbers (a couple of messages each at 1M, or none).
pub(crate) fn search_terms() -> Vec<(&'static str, String)> {
    let mut terms: Vec<(&'static str, String)> = [
        (0, "order"),
        (0, "refund"),
        (0, "delivery"),
        (0, "invoice"),
        (1, "warranty"),
        (1, "voucher"),
        (1, "chargeback"),
        (1, "customs"),
        (2, "damaged parcel"),
        (2, "refund invoice"),
        (2, "password reset"),
    ]
    .into_iter()
    .map(|(kind, term)| (SEARCH_KINDS[kind], term.to_owned()))
    .collect();
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..4 {
        terms.push((
            SEARCH_KINDS[3],
            rng.random_range(10_000..100_000).to_string(),
        ));
    }
    terms
}

// ---------------------------------------------------------------------------------------------
// Open-loop runner and statistics.

pub(crate) type OpFuture = Pin<Box<dyn Future<Output = (&'static str, Option<String>)> + Send>>;

#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) kind: &'static str,
    pub(crate) latency: Duration,
    pub(crate) error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct RunResult {
    pub(crate) samples: Vec<Sample>,
    /// From the first scheduled operation to the last answer.
    pub(crate) elapsed: Duration,
    /// How late the generator started each operation (timer granularity, or an overloaded client).
    pub(crate) lag: Vec<Duration>,
    pub(crate) peak_in_flight: usize,
}

/// Issues `rate × duration` operations at fixed times; each one's latency runs from its scheduled
/// time to its end, including any wait for one of the `concurrency` slots.
pub(crate) async fn open_loop(
    rate: f64,
    duration: Duration,
    concurrency: usize,
    mut op: impl FnMut(u64) -> OpFuture + Send + 'static,
) -> RunResult {
    let total = ((rate * duration.as_secs_f64()).round() as u64).max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(5);
    // The schedule is kept by a thread of its own sleeping to each instant (tokio's timer wheel
    // rounds up to the next millisecond, which would add up to 1 ms to every latency).
    let peak_seen = peak.clone();
    let schedule = tokio::task::spawn_blocking(move || {
        let mut tasks = Vec::with_capacity(total as usize);
        let mut lag = Vec::with_capacity(total as usize);
        for k in 0..total {
            let scheduled = start + Duration::from_secs_f64(k as f64 / rate);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            lag.push(scheduled.elapsed());
            let future = op(k);
            let (slots, in_flight, peak) = (slots.clone(), in_flight.clone(), peak.clone());
            tasks.push(runtime.spawn(async move {
                let (kind, error) = match slots.acquire_owned().await {
                    Ok(permit) => {
                        let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                        peak.fetch_max(now, Ordering::Relaxed);
                        let outcome = future.await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                        outcome
                    }
                    Err(e) => ("?", Some(e.to_string())),
                };
                Sample {
                    kind,
                    latency: scheduled.elapsed(),
                    error,
                }
            }));
        }
        (tasks, lag)
    });
    let (tasks, lag) = match schedule.await {
        Ok(scheduled) => scheduled,
        Err(e) => {
            return RunResult {
                samples: vec![Sample {
                    kind: "?",
                    latency: Duration::ZERO,
                    error: Some(format!("the scheduler failed: {e}")),
                }],
                elapsed: start.elapsed(),
                lag: Vec::new(),
                peak_in_flight: 0,
            };
        }
    };
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(sample) => samples.push(sample),
            Err(e) => samples.push(Sample {
                kind: "?",
                latency: Duration::ZERO,
                error: Some(format!("task failed: {e}")),
            }),
        }
    }
    RunResult {
        samples,
        elapsed: start.elapsed(),
        lag,
        peak_in_flight: peak_seen.load(Ordering::Relaxed),
    }
}
