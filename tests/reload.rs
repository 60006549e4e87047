//! Live reload: content edited on disk while the server runs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{config, fixtures, TestServer, Visitor};
use serde_json::Value;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn healthz(addr: std::net::SocketAddr) -> Value {
    let r = common::http_get(addr, "/healthz", &[]).await;
    serde_json::from_str(&r.body).expect("healthz is JSON")
}

/// Asks until the reply satisfies `done` (reloads are asynchronous), 10 s at most.
async fn ask_until(v: &mut Visitor, text: &str, done: impl Fn(&Value) -> bool) -> Value {
    for attempt in 0..100 {
        let reply = v.ask(&format!("{text}-{attempt}"), text).await;
        if done(&reply) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("content change not live within 10 s");
}

#[tokio::test]
async fn edits_go_live_and_bad_edits_keep_the_old_content() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    copy_dir(&fixtures(), &content);
    let mut cfg = config(&dir.path().join("data"));
    cfg.intents = content.join("intents.toml");
    cfg.knowledge_base = content.join("kb");
    let server = TestServer::start(cfg).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    let before = v.ask("m0", "how long does delivery take").await;
    assert_eq!(before["text"], "Standard delivery takes 2-4 working days.");

    // A good edit.
    let article = content.join("kb/shipping/times.md");
    let text = std::fs::read_to_string(&article).unwrap();
    std::fs::write(
        &article,
        text.replace("2-4 working days", "1-3 working days"),
    )
    .unwrap();
    ask_until(&mut v, "how long does delivery take", |r| {
        r["text"] == "Standard delivery takes 1-3 working days."
    })
    .await;

    // A bad edit: the article loses its front matter. The last good content keeps answering.
    std::fs::write(&article, "no front matter here\n").unwrap();
    let mut errors = 0;
    for _ in 0..100 {
        let health = healthz(server.addr).await;
        errors = health["reload_errors"].as_u64().unwrap();
        if errors > 0 {
            let last = health["last_reload_error"].as_str().unwrap();
            assert!(last.contains("shipping/times.md:1:"), "{last}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(errors > 0, "the bad edit was reported");
    let still = v.ask("m-bad", "how long does delivery take").await;
    assert_eq!(still["text"], "Standard delivery takes 1-3 working days.");

    // Mend it, then delete another article and rename a third.
    std::fs::write(&article, text).unwrap();
    std::fs::remove_file(content.join("kb/returns/policy.md")).unwrap();
    std::fs::rename(
        content.join("kb/returns/label.md"),
        content.join("kb/returns/return-label.md"),
    )
    .unwrap();
    let renamed = ask_until(&mut v, "where do i get a return label", |r| {
        r["source"]["id"] == "returns/return-label.md"
    })
    .await;
    assert_eq!(renamed["kind"], "answer");
    let gone = v.ask("m-gone", "what is your returns policy").await;
    assert_ne!(gone["source"]["id"], "returns/policy.md", "{gone}");
    let health = healthz(server.addr).await;
    assert_eq!(health["articles"], 2);
    assert!(health["last_reload_error"].is_null());
    server.stop().await;
}
