//! The Mastodon channel against a real server speaking Mastodon's client API: GoToSocial
//! (`tests/services/gotosocial`, built from the Go module proxy). Its customer `ada` writes to our
//! account `acme` directly and publicly; the inbox takes both (GoToSocial streams over WebSocket
//! only, so the source falls back to polling, as with any instance without the SSE stream), keeps
//! them apart, and the agent's replies arrive at Ada's side in the right thread with the right
//! visibility.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use inbox_connectors::mastodon;
use inbox_e2e::{Backend, TestApp, str_of, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A running GoToSocial with the accounts `acme` and `ada`; stopped when dropped.
struct GoToSocial {
    state: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl GoToSocial {
    fn script() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("services/gotosocial")
    }

    /// Builds it first when it is not built yet (tests/run starts that build early).
    fn start() -> GoToSocial {
        let state = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(Self::script())
            .arg("start")
            .arg(state.path())
            .output()
            .unwrap_or_else(|e| panic!("tests/services/gotosocial does not run: {e}"));
        assert!(
            out.status.success(),
            "tests/services/gotosocial start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        GoToSocial { state, env }
    }

    fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} in {:?}", self.env))
    }
}

impl Drop for GoToSocial {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .arg("stop")
            .arg(self.state.path())
            .output();
    }
}

/// Ada, on the server: posts and reads as its clients do.
struct Ada<'a> {
    server: &'a GoToSocial,
    client: reqwest::Client,
}

impl Ada<'_> {
    async fn post(&self, text: &str, visibility: &str) -> String {
        let status: Value = self
            .client
            .post(format!("{}/api/v1/statuses", self.server.get("url")))
            .bearer_auth(self.server.get("ada_token"))
            .json(&json!({"status": text, "visibility": visibility}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        str_of(&status, "id").to_owned()
    }

    /// The statuses mentioning Ada (our replies), newest first.
    async fn mentions(&self) -> Vec<Value> {
        let page: Value = self
            .client
            .get(format!(
                "{}/api/v1/notifications?types[]=mention",
                self.server.get("url")
            ))
            .bearer_auth(self.server.get("ada_token"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        page.as_array()
            .unwrap()
            .iter()
            .map(|n| n["status"].clone())
            .collect()
    }
}

// The script runs blocking: the app answers from the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_mastodon_api_server_in_and_out() {
    let server = tokio::task::spawn_blocking(GoToSocial::start)
        .await
        .unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, server.get("acme_token")).unwrap();
    let channel = app
        .store
        .add_channel(inbox_core::store::NewChannel {
            kind: mastodon::KIND,
            name: "GoToSocial".into(),
            config: json!({
                "instance_url": server.get("url"),
                "token_file": token_file,
                "poll_interval_secs": 5,
            }),
            secret: "unused".into(),
            rules: mastodon::RULES,
        })
        .await
        .unwrap();
    let ada = Ada {
        server: &server,
        client: reqwest::Client::builder()
            .user_agent("inbox-tests")
            .build()
            .unwrap(),
    };

    // The connection test names the account and the instance's limit.
    let report = app
        .api_post(&format!("/api/v1/channels/{}/test", channel.id), &json!({}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(report["checks"][0]["ok"], true, "{report:#}");
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("5000 characters"),
        "{report:#}"
    );

    let direct = ada.post("@acme my parcel never came", "direct").await;
    let public = ada.post("@acme are you open on Sunday?", "public").await;
    let threads = wait_for(WAIT, "both statuses as conversations", async || {
        let conversations = app.conversations().await;
        (conversations.len() == 2).then_some(conversations)
    })
    .await;
    let subject = |c: &Value| c["subject"].as_str().unwrap_or_default().to_owned();
    let dm = threads
        .iter()
        .find(|c| subject(c) == mastodon::parse::DIRECT_SUBJECT)
        .expect("the direct thread");
    let open = threads
        .iter()
        .find(|c| subject(c).starts_with("Public mention"))
        .expect("the public thread");
    let dm_id = str_of(dm, "id").to_owned();
    let history = app.messages(&dm_id).await;
    assert_eq!(history[0]["text"], "my parcel never came", "{history:#?}");
    assert_eq!(history[0]["external_id"], direct.as_str());
    let domain = server.get("domain");
    assert_eq!(dm["contact_handle"], format!("@ada@{domain}"));

    // Replies: at Ada's side, direct to direct and public to public, each in its thread.
    for (conversation, text) in [
        (dm_id.as_str(), "Sorry! A new one ships today."),
        (str_of(open, "id"), "Yes, 10 to 4."),
    ] {
        let reply = app.agent_writes(conversation, text, false).await;
        app.wait_for_delivery(conversation, str_of(&reply, "id"), "sent")
            .await;
    }
    let replies = wait_for(WAIT, "both replies at Ada's", async || {
        let mentions = ada.mentions().await;
        (mentions.len() >= 2).then_some(mentions)
    })
    .await;
    let reply_to = |id: &str| {
        replies
            .iter()
            .find(|s| s["in_reply_to_id"] == id)
            .unwrap_or_else(|| panic!("a reply to {id}: {replies:#?}"))
            .clone()
    };
    let to_direct = reply_to(&direct);
    assert_eq!(to_direct["visibility"], "direct", "{to_direct:#}");
    assert!(
        to_direct["content"]
            .as_str()
            .unwrap()
            .contains("A new one ships today"),
        "{to_direct:#}"
    );
    assert_eq!(reply_to(&public)["visibility"], "public");

    // Ada answers our direct reply: the same conversation.
    let answer: Value = ada
        .client
        .post(format!("{}/api/v1/statuses", server.get("url")))
        .bearer_auth(server.get("ada_token"))
        .json(&json!({
            "status": "@acme thank you!", "visibility": "direct",
            "in_reply_to_id": str_of(&to_direct, "id"),
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = wait_for(WAIT, "the answer in the direct thread", async || {
        let history = app.messages(&dm_id).await;
        history
            .into_iter()
            .find(|m| m["external_id"] == answer["id"])
    })
    .await;
    assert_eq!(stored["thread_reason"], "reply_reference", "{stored:#}");
    assert_eq!(app.conversations().await.len(), 2);
    app.stop().await;
}
