//! The database's syncs, seen with strace: made to fail (strace's fault
//! injection), the server refuses messages with an error frame and never
//! acknowledges one it did not store; and the log is synced with fdatasync.

mod common;

use std::collections::HashMap;

use common::{Process, Visitor};
use serde_json::json;

#[tokio::test]
async fn a_failing_fsync_is_refused_and_never_acknowledged() {
    let strace = std::process::Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is needed for this test (Debian package strace; ./scripts/test installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    // Start once without faults so the schema is in place, then again with
    // every sync from the 15th on failing.
    Process::start(dir.path()).kill();
    let server = Process::start_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fsync,fdatasync",
            "-e",
            "inject=fsync,fdatasync:error=EIO:when=15+",
        ],
        dir.path(),
    );
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;

    // Each message gets exactly one answer: ack (then the reply) or an error.
    let mut verdicts: HashMap<String, &str> = HashMap::new();
    for i in 0..40 {
        let id = format!("m{i}");
        v.send(json!({"type": "message", "id": id, "text": "hello"}))
            .await;
        let first = v.recv().await;
        match first["type"].as_str().unwrap() {
            "ack" => {
                assert_eq!(first["id"], id.as_str());
                assert_eq!(v.expect("reply").await["kind"], "answer");
                verdicts.insert(id, "ack");
            }
            "error" => {
                assert_eq!(first["code"], "store_unavailable", "{first}");
                verdicts.insert(id, "refused");
            }
            other => panic!("unexpected {other}: {first}"),
        }
    }
    let acked: Vec<&String> = verdicts
        .iter()
        .filter(|(_, v)| **v == "ack")
        .map(|(k, _)| k)
        .collect();
    let refused = verdicts.len() - acked.len();
    assert!(
        !acked.is_empty(),
        "some messages were stored before the faults"
    );
    assert!(refused > 0, "the injected faults refused some messages");
    drop(v);
    server.kill();

    // Without faults: every acknowledged message is there once, and a refused
    // one sent again is stored once too.
    let server = Process::start(dir.path());
    let mut v = Visitor::connect(&server.url()).await;
    let back = v.resume(&welcome).await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    for h in back["history"].as_array().unwrap() {
        if let Some(id) = h["id"].as_str() {
            *stored.entry(id.to_string()).or_default() += 1;
        }
    }
    for id in &acked {
        assert_eq!(
            stored.get(*id),
            Some(&1),
            "acknowledged {id} is stored once"
        );
    }
    for (id, verdict) in &verdicts {
        if *verdict == "refused" {
            v.send(json!({"type": "message", "id": id, "text": "hello"}))
                .await;
            // A refused message may still have reached the disk (the sync
            // failed after the write): then it is acknowledged without a new
            // reply; otherwise it is stored now and answered.
            loop {
                let f = v.recv().await;
                if f["type"] == "ack" {
                    assert_eq!(f["id"], id.as_str());
                    break;
                }
                assert_eq!(f["type"], "reply", "{f}");
            }
        }
    }
    drop(v);
    let mut v = Visitor::connect(&server.url()).await;
    let last = v.resume(&welcome).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for h in last["history"].as_array().unwrap() {
        if let Some(id) = h["id"].as_str() {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    server.kill();
}

/// The log is synced with fdatasync(2), which skips the inode's write when
/// only its modification time changed (on a journaled filesystem, a journal
/// commit per group commit): the bundled SQLite is built with
/// `HAVE_FDATASYNC` (`.cargo/config.toml`). Without it, SQLite calls fsync(2).
#[tokio::test]
async fn an_acknowledged_message_is_synced_with_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("syncs.trace");
    let data = dir.path().join("data");
    let server = Process::start_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-y",
            "-o",
            trace.to_str().unwrap(),
            "-e",
            "trace=fsync,fdatasync",
        ],
        &data,
    );
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    v.send(json!({"type": "message", "id": "m1", "text": "hello"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m1");
    drop(v);
    server.kill();

    let trace = std::fs::read_to_string(&trace).unwrap();
    let syncs = |call: &str| {
        trace
            .lines()
            .filter(|l| l.contains(&format!(" {call}(")) && l.contains("frontdesk.db"))
            .count()
    };
    assert!(syncs("fdatasync") > 0, "the log was synced:\n{trace}");
    assert_eq!(syncs("fsync"), 0, "no fsync of the database:\n{trace}");
    assert!(
        trace.contains("frontdesk.db-wal>"),
        "the log itself was synced:\n{trace}"
    );
}
