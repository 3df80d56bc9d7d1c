//! A burst of parallel sign-ins costs bounded memory: each Argon2id check needs 19 MiB, and on
//! the blocking pool 50 checks at once took the process from 136 MB to 1 GB for good. Password
//! checks now run on a fixed pool that reuses its memory. This file holds one test so that the
//! process's resident memory is this test's alone.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

use futures::future::join_all;
use inbox_e2e::session::SignInForm;
use inbox_e2e::{Backend, TestApp};
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;

/// Resident memory of this process, in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib / 1024
}

/// Growth allowed over the warmed-up process: the checks' memory is held by the pool's threads
/// (one 19 MiB area each, already there after the warm-up), so a burst adds little beyond
/// buffers. Fifty checks on the blocking pool, as before, added ~900 MiB.
const MAX_GROWTH_MIB: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_sign_ins_keeps_memory_bounded() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        // Each request comes from its own client behind our proxy, so no limit stops the burst
        // before its passwords are checked: the worst case for memory.
        config.web.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let attempt =
        |n: usize| {
            SignInForm::new(&format!("nobody{n}@example.com"), "wrong password").from_client(
                &format!("10.{}.{}.{}", n / 65_536, (n / 256) % 256, n % 256),
            )
        };
    // Warm-up: every pool thread has checked a password once (and holds its memory area).
    let warm: Vec<_> = (0..8).map(attempt).collect();
    join_all(warm.iter().map(|a| a.submit(&app))).await;
    let before = rss_mib();

    let mut checked = 0;
    for burst in 0..3 {
        let forms: Vec<_> = (0..50).map(|n| attempt(1_000 * (burst + 1) + n)).collect();
        let responses = join_all(forms.iter().map(|f| f.submit(&app))).await;
        for response in &responses {
            match response.status() {
                StatusCode::UNAUTHORIZED => checked += 1,
                // Beyond the pool's queue: refused at once, with when to retry.
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(response.headers().contains_key(RETRY_AFTER));
                }
                other => panic!("unexpected status {other}"),
            }
        }
        let now = rss_mib();
        assert!(
            now <= before + MAX_GROWTH_MIB,
            "burst {burst}: resident memory grew from {before} MiB to {now} MiB"
        );
    }
    // Most attempts were really checked: the bound is not bought by refusing everything.
    assert!(
        checked >= 3 * 40,
        "only {checked} of 150 attempts were checked"
    );
    app.stop().await;
}
