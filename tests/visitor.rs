//! The visitor websocket against a real server on 127.0.0.1:0.

mod common;

use common::{config, database_text, Process, TestServer, Visitor};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn intent_answer_fills_the_order_number_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    assert_eq!(welcome["state"], "bot");
    assert!(welcome["history"].as_array().unwrap().is_empty());

    let reply = v.ask("m1", "Where is my order FD-123456?").await;
    assert_eq!(reply["kind"], "answer");
    assert_eq!(reply["source"]["type"], "intent");
    assert_eq!(reply["source"]["id"], "order_status");
    assert_eq!(reply["text"], "Order FD-123456 is on its way.");
    assert_eq!(
        reply["quick_replies"][0]["label"],
        "Change delivery address"
    );

    // Without the number the bot asks for it, and the next message fills it.
    let ask = v.ask("m2", "where's my order").await;
    assert_eq!(ask["kind"], "clarify");
    assert_eq!(
        ask["text"],
        "What's your order number? It looks like FD-123456."
    );
    let filled = v.ask("m3", "it is FD-654321").await;
    assert_eq!(filled["text"], "Order FD-654321 is on its way.");
    server.stop().await;
}

#[tokio::test]
async fn article_answer_has_excerpt_title_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    let reply = v.ask("m1", "How long does delivery take?").await;
    assert_eq!(reply["kind"], "answer");
    assert_eq!(reply["source"]["type"], "article");
    assert_eq!(reply["source"]["id"], "shipping/times.md");
    assert_eq!(reply["source"]["title"], "How long does delivery take?");
    assert_eq!(
        reply["source"]["url"],
        "https://shop.example/help/shipping/times"
    );
    assert_eq!(reply["text"], "Standard delivery takes 2-4 working days.");

    // Feedback on a real answer is accepted silently; on an unknown one, an error.
    v.send(json!({"type": "feedback", "answer_id": reply["answer_id"], "helpful": true}))
        .await;
    v.send(json!({"type": "feedback", "answer_id": "a_nope", "helpful": true}))
        .await;
    let err = v.expect("error").await;
    assert_eq!(err["code"], "unknown_answer");
    server.stop().await;
}

#[tokio::test]
async fn close_call_offers_choices_and_a_choice_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Nothing is confident enough to answer outright, so candidates are offered.
    cfg.engine.answer_threshold = 0.99;
    cfg.engine.clarify_threshold = 0.05;
    cfg.engine.clarify_margin = 0.5;
    let server = TestServer::start(cfg).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    let reply = v.ask("m1", "return label policy").await;
    assert_eq!(reply["kind"], "clarify", "{reply}");
    let values: Vec<&str> = reply["quick_replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["value"].as_str().unwrap())
        .collect();
    assert!(values.contains(&"article:returns/label.md"), "{values:?}");
    assert!(values.contains(&"article:returns/policy.md"), "{values:?}");

    v.send(json!({"type": "choice", "id": "m2", "value": "article:returns/label.md"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m2");
    let answer = v.expect("reply").await;
    assert_eq!(answer["kind"], "answer");
    assert_eq!(answer["source"]["id"], "returns/label.md");
    assert_eq!(
        answer["text"],
        "Download the return label from the Orders page of your account."
    );
    server.stop().await;
}

#[tokio::test]
async fn card_number_escalates_and_never_reaches_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    let reply = v
        .ask("m1", "my card 4111 1111 1111 1111 was charged twice")
        .await;
    assert_eq!(reply["kind"], "escalate");
    assert_eq!(
        reply["text"],
        "A member of our team will help you with this."
    );
    // Nobody is signed in to the console: queued, and offered a ticket.
    assert_eq!(v.expect("offline").await["reason"], "no_agents");
    let queue = v.expect("queue").await;
    assert_eq!(queue["position"], 1);
    // Later messages are kept for the agent, redacted too.
    v.send(json!({"type": "message", "id": "m2", "text": "it was 4111-1111-1111-1111"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m2");
    drop(v);
    server.stop().await;

    let haystack = database_text(dir.path());
    assert!(
        haystack.contains("[redacted]"),
        "the redacted message is stored"
    );
    for needle in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
    ] {
        assert!(
            !haystack.contains(needle),
            "{needle} found in the database files"
        );
    }
}

#[tokio::test]
async fn fallbacks_escalate_after_the_configured_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    let first = v.ask("m1", "what is the capital of peru").await;
    assert_eq!(first["kind"], "fallback");
    assert_eq!(first["quick_replies"][0]["value"], "request_human");
    let second = v.ask("m2", "who won the football yesterday").await;
    assert_eq!(second["kind"], "escalate");
    assert_eq!(v.expect("offline").await["reason"], "no_agents");
    assert_eq!(v.expect("queue").await["position"], 1);
    server.stop().await;
}

#[tokio::test]
async fn resume_after_reconnect_brings_the_history_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    v.ask("m1", "how long does delivery take").await;
    drop(v);

    let mut again = Visitor::connect(&server.url()).await;
    let resumed = again.resume(&welcome).await;
    assert_eq!(resumed["conversation_id"], welcome["conversation_id"]);
    let history = resumed["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["role"], "visitor");
    assert_eq!(history[0]["id"], "m1");
    assert_eq!(history[1]["role"], "bot");
    assert_eq!(history[1]["source"]["id"], "shipping/times.md");

    // A wrong token does not open someone else's conversation.
    let mut intruder = Visitor::connect(&server.url()).await;
    intruder
        .send(json!({"type": "hello", "conversation_id": welcome["conversation_id"], "resume_token": "guess"}))
        .await;
    let other = intruder.expect("welcome").await;
    assert_ne!(other["conversation_id"], welcome["conversation_id"]);
    assert!(other["history"].as_array().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_resent_message_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    v.ask("m1", "how long does delivery take").await;
    // The client did not see the ack and sends the same id again.
    v.send(json!({"type": "message", "id": "m1", "text": "how long does delivery take"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m1");
    // The next frame answers the next message, not the duplicate.
    let next = v.ask("m2", "hello").await;
    assert_eq!(next["source"]["id"], "greeting");
    drop(v);

    let mut again = Visitor::connect(&server.url()).await;
    let resumed = again.resume(&welcome).await;
    let visitor_msgs: Vec<_> = resumed["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["role"] == "visitor")
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(visitor_msgs, ["m1", "m2"]);
    server.stop().await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_conversation_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;

    v.send(json!({"type": "message", "id": "m0", "text": "hi"}))
        .await;
    assert_eq!(v.expect("error").await["code"], "not_started");
    v.hello().await;

    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "bad_json"),
        (Message::Text(r#"{"type":"dance"}"#.into()), "unknown_type"),
        (
            Message::Text(r#"{"type":"message","id":"x"}"#.into()),
            "invalid_frame",
        ),
        (
            Message::Text(r#"{"type":"message","id":"x","text":"   "}"#.into()),
            "empty_message",
        ),
        (
            Message::Text(
                json!({"type":"message","id":"x","text":"a".repeat(17 * 1024)})
                    .to_string()
                    .into(),
            ),
            "message_too_long",
        ),
        (
            Message::Binary(vec![0xff, 0xfe, 0x00].into()),
            "binary_frame",
        ),
        (
            Message::Text(r#"{"type":"rating","score":7}"#.into()),
            "invalid_rating",
        ),
        (
            Message::Text(r#"{"type":"hello"}"#.into()),
            "already_started",
        ),
    ];
    for (msg, code) in cases {
        v.send_raw(msg).await;
        let err = v.expect("error").await;
        assert_eq!(err["code"], code, "{err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let reply = v.ask("m1", "how long does delivery take").await;
    assert_eq!(reply["kind"], "answer");
    server.stop().await;
}

#[tokio::test]
async fn close_reports_the_outcome_and_ends_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    v.ask("m1", "how long does delivery take").await;
    v.send(json!({"type": "close"})).await;
    assert_eq!(v.expect("closed").await["outcome"], "deflected");
    v.send(json!({"type": "rating", "score": 5})).await;
    v.send(json!({"type": "message", "id": "m2", "text": "one more thing"}))
        .await;
    assert_eq!(v.expect("error").await["code"], "conversation_closed");
    server.stop().await;
}

#[tokio::test]
async fn request_human_queues_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut first = Visitor::connect(&server.url()).await;
    first.hello().await;
    let reply = first.ask("m1", "can I talk to a human please").await;
    assert_eq!(reply["kind"], "escalate");
    assert_eq!(reply["source"]["id"], "human_request");
    assert_eq!(first.expect("offline").await["reason"], "no_agents");
    assert_eq!(first.expect("queue").await["position"], 1);

    let mut second = Visitor::connect(&server.url()).await;
    second.hello().await;
    second.send(json!({"type": "request_human"})).await;
    assert_eq!(second.expect("reply").await["kind"], "escalate");
    assert_eq!(second.expect("offline").await["reason"], "no_agents");
    assert_eq!(second.expect("queue").await["position"], 2);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_visitors_to_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    let stopping = tokio::spawn(server.stop());
    use futures_util::StreamExt;
    let close = loop {
        match v.ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("close frame has a code").code), 1012);
    stopping.await.unwrap();
}

#[test]
fn an_acknowledged_message_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = Process::start(dir.path());
    let welcome = rt.block_on(async {
        let mut v = Visitor::connect(&server.url()).await;
        let welcome = v.hello().await;
        v.send(json!({"type": "message", "id": "m1", "text": "how long does delivery take"}))
            .await;
        assert_eq!(v.expect("ack").await["id"], "m1");
        welcome
    });
    server.kill();

    let server = Process::start(dir.path());
    rt.block_on(async {
        let mut v = Visitor::connect(&server.url()).await;
        let resumed = v.resume(&welcome).await;
        assert_eq!(resumed["conversation_id"], welcome["conversation_id"]);
        let history = resumed["history"].as_array().unwrap();
        assert_eq!(history[0]["id"], "m1");
        assert_eq!(history[0]["text"], "how long does delivery take");
    });
    server.kill();
}

/// The "Max open files" limits of a process: (soft, hard).
fn open_files_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut values = line.split_whitespace().skip(3).map(|v| v.parse().unwrap());
    (values.next().unwrap(), values.next().unwrap())
}

/// Every connection holds a file descriptor. Started with a soft open-files
/// limit of 256 under a higher hard limit, as shells and service managers
/// often start it, the server raises the soft limit to the hard one and
/// welcomes more visitors than 256 descriptors would hold.
#[test]
fn serve_raises_its_open_files_limit_to_the_hard_one() {
    let (_, hard) = open_files_limits("self");
    if hard < 1024 {
        eprintln!("skipped: the hard open-files limit here ({hard}) leaves nothing to raise");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start_under(&["prlimit", "--nofile=256:"], dir.path());
    assert_eq!(
        open_files_limits(&server.child.id().to_string()),
        (hard, hard)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut held = Vec::new();
        for i in 0..400 {
            let welcomed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                let mut v = Visitor::connect(&server.url()).await;
                v.hello().await;
                v
            })
            .await;
            held.push(welcomed.unwrap_or_else(|_| panic!("visitor {i} was not welcomed")));
        }
    });
    server.kill();
}

/// Out of file descriptors, the server keeps the connections it cannot
/// accept waiting in the listen queue, says so in one log line rather than
/// one for each retry, and takes them once descriptors are freed.
#[test]
fn a_server_out_of_descriptors_logs_once_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start_under(&["prlimit", "--nofile=64:64"], dir.path());
    // More connections than the descriptors left: those past the limit wait.
    let held: Vec<std::net::TcpStream> = (0..80)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let failures = server.log().matches("accept failed").count();
    assert_eq!(failures, 1, "{}", server.log());
    drop(held);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let welcomed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let mut v = Visitor::connect(&server.url()).await;
            v.hello().await
        })
        .await
        .expect("a visitor is welcomed once descriptors are free");
        assert_eq!(welcomed["state"], "bot");
    });
    server.kill();
}

#[test]
fn serve_refuses_bad_content_and_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let kb = dir.path().join("kb");
    std::fs::create_dir_all(&kb).unwrap();
    std::fs::write(kb.join("ok.md"), "---\ntitle: \"Fine\"\n---\nBody.\n").unwrap();
    let intents = dir.path().join("intents.toml");
    std::fs::write(
        &intents,
        "[[intent]]\nid = \"broken\"\npatterns = ['(unclosed']\nresponse = \"x\"\n",
    )
    .unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .arg("--intents")
            .arg(&intents)
            .arg("--kb")
            .arg(&kb)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("intents.toml:3:"), "{stderr}");
    assert!(stderr.contains("intent \"broken\""), "{stderr}");

    // A good intents file, but an article with broken front matter.
    std::fs::write(&intents, "").unwrap();
    std::fs::write(
        kb.join("bad.md"),
        "---\ntitle: \"Bad\"\nquestions: [unclosed\n---\nBody\n",
    )
    .unwrap();
    let out = run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.md:"), "{stderr}");
    assert!(stderr.contains("front matter"), "{stderr}");
}

async fn connect_from(url: &str, origin: &str) -> Result<(), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn websocket_origin_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.allowed_origins = vec!["https://shop.example".into()];
    let server = TestServer::start(cfg).await;
    let url = server.url();
    assert_eq!(connect_from(&url, "https://evil.example").await, Err(403));
    assert_eq!(connect_from(&url, "https://shop.example").await, Ok(()));
    // The server's own pages.
    assert_eq!(
        connect_from(&url, &format!("http://{}", server.addr)).await,
        Ok(())
    );
    assert_eq!(
        common::scrape(
            server.addr,
            "frontdesk_connections_refused_total{reason=\"origin\"}"
        )
        .await,
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn websockets_over_the_limit_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_connections = 1;
    let server = TestServer::start(cfg).await;
    let mut first = Visitor::connect(&server.url()).await;
    first.hello().await;
    match tokio_tungstenite::connect_async(server.url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a second websocket opened: {:?}", other.map(|_| ())),
    }
    assert_eq!(
        common::scrape(
            server.addr,
            "frontdesk_connections_refused_total{reason=\"max_connections\"}"
        )
        .await,
        1.0
    );
    // The one open is served as before.
    assert_eq!(first.ask("m1", "hello").await["source"]["id"], "greeting");
    server.stop().await;
}

#[tokio::test]
async fn pages_carry_a_strict_content_security_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let page = common::http_get(server.addr, "/", &[]).await;
    let response = format!("{}\n\n{}", page.headers, page.body);
    let lower = response.to_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{response}"
    );
    assert!(lower.contains("x-content-type-options: nosniff"));
    // No inline script or style for the policy to allow: the demo page loads
    // the widget with one script tag.
    assert!(response.contains(r#"<script src="/widget.js""#));
    assert!(!response.contains("<script>"));
    assert!(!response.contains("<style") && !response.contains(" style="));
    server.stop().await;
}

#[tokio::test]
async fn a_client_flooding_frames_is_rate_limited_and_keeps_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.frames_per_second = 1;
    cfg.limits.frame_burst = 3;
    let server = TestServer::start(cfg).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await; // one token
    for id in ["m1", "m2"] {
        v.send(json!({"type": "message", "id": id, "text": "hello"}))
            .await;
    }
    // The burst is spent: this one is refused, not processed.
    v.send(json!({"type": "message", "id": "m3", "text": "hello"}))
        .await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let f = v.recv().await;
        seen.push(format!(
            "{}:{}",
            f["type"].as_str().unwrap(),
            f["id"].as_str().or(f["code"].as_str()).unwrap_or("")
        ));
    }
    assert_eq!(
        seen,
        ["ack:m1", "reply:", "ack:m2", "reply:", "error:rate_limited"]
    );
    assert_eq!(
        common::scrape(
            server.addr,
            "frontdesk_frames_refused_total{reason=\"rate_limited\"}"
        )
        .await,
        1.0
    );
    // After a pause the client carries on.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reply = v.ask("m3", "hello").await;
    assert_eq!(reply["source"]["id"], "greeting");
    server.stop().await;
}

#[tokio::test]
async fn the_load_generator_reports_refused_frames_by_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.frames_per_second = 1;
    cfg.limits.frame_burst = 2;
    let server = TestServer::start(cfg).await;
    let url = server.url();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk-load"))
            .args(["--url", &url, "--visitors", "2", "--duration", "5"])
            .args(["--count", "20", "--no-echo", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{run:?}");
    let out: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let f = &out["frontdesk"];
    let refused = f["error_detail"]["error_codes"]["rate_limited"]
        .as_u64()
        .unwrap_or_else(|| panic!("rate_limited counted: {f}"));
    let replies = f["replies"].as_u64().unwrap();
    // Each visitor's burst and one more a second are answered; the rest of
    // the twenty messages are refused, and counted as such.
    assert!(replies >= 2 && refused >= 10, "{f}");
    assert_eq!(replies + refused, 20, "{f}");
    assert_eq!(f["error_detail"]["error_frames"].as_u64(), Some(refused));
    assert_eq!(
        common::scrape(
            server.addr,
            "frontdesk_frames_refused_total{reason=\"rate_limited\"}"
        )
        .await,
        refused as f64
    );
    server.stop().await;
}

#[tokio::test]
async fn forget_deletes_a_visitors_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    v.ask("m1", "my name is Ada Lovelace, how long does delivery take")
        .await;
    drop(v);
    server.stop().await;

    let id = welcome["conversation_id"].as_str().unwrap();
    let forget = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
            .args(["forget", id, "--data"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert!(forget().status.success());
    assert!(!forget().status.success(), "a second forget finds nothing");
    assert!(
        !database_text(dir.path()).contains("Ada Lovelace"),
        "the visitor's words are gone from the database files"
    );
    let server = TestServer::start(config(dir.path())).await;
    let mut again = Visitor::connect(&server.url()).await;
    let resumed = again.resume(&welcome).await;
    assert_ne!(resumed["conversation_id"], welcome["conversation_id"]);
    server.stop().await;
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_connections_per_address = 2;
    let server = TestServer::start(cfg).await;
    let mut first = Visitor::connect(&server.url()).await;
    let mut second = Visitor::connect(&server.url()).await;
    first.hello().await;
    second.hello().await;
    // The third from the same address is closed before its handshake.
    assert!(tokio_tungstenite::connect_async(server.url())
        .await
        .is_err());
    // Closing one frees its place.
    drop(first);
    let mut third = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(server.url()).await {
            third = Some(Visitor { ws });
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    third.expect("a place frees up").hello().await;
    // Each refused connection was counted (the retries above may have been
    // refused too, while the first's place was still taken).
    drop(second);
    let mut refused = 0.0;
    for _ in 0..50 {
        match common::try_http_get(server.addr, "/metrics", &[]).await {
            Ok(r) if r.status == 200 => {
                refused = common::metric(
                    &r.body,
                    "frontdesk_connections_refused_total{reason=\"per_address\"}",
                );
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert!(refused >= 1.0, "refusals counted: {refused}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.handshake_timeout_secs = 1;
    cfg.limits.max_handshaking = 2;
    let server = TestServer::start(cfg).await;
    // Two clients trickle part of a request and stop.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(tcp);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // They fill the handshake slots: a third connection is turned away...
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "turned away: {n:?}");
    // ...and the slow ones are closed when their time is up.
    for mut tcp in slow {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("closed within the handshake timeout");
        assert!(matches!(n, Ok(0) | Err(_)), "closed: {n:?}");
    }
    // A well-behaved visitor gets in, and its websocket outlives the timeout.
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(v.ask("m1", "hello").await["kind"], "answer");
    // The one turned away and the two timed out, each counted once.
    assert_eq!(
        common::scrape(
            server.addr,
            "frontdesk_connections_refused_total{reason=\"handshaking\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        common::scrape(
            server.addr,
            "frontdesk_connections_dropped_total{reason=\"handshake_timeout\"}"
        )
        .await,
        2.0
    );
    server.stop().await;
}

#[tokio::test]
async fn a_conversation_has_a_length_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_conversation_messages = 2;
    let server = TestServer::start(cfg).await;
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    v.ask("m1", "hello").await;
    v.ask("m2", "hello").await;
    v.send(json!({"type": "message", "id": "m3", "text": "hello"}))
        .await;
    assert_eq!(v.expect("error").await["code"], "conversation_too_long");
    // The count survives a reconnect.
    let mut again = Visitor::connect(&server.url()).await;
    again.resume(&welcome).await;
    again
        .send(json!({"type": "message", "id": "m4", "text": "hello"}))
        .await;
    assert_eq!(again.expect("error").await["code"], "conversation_too_long");
    server.stop().await;
}

#[tokio::test]
async fn a_long_conversation_resumes_with_its_latest_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.frames_per_second = 0;
    let server = TestServer::start(cfg).await;
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    for i in 0..160 {
        v.ask(&format!("m{i}"), "hello").await;
    }
    let mut again = Visitor::connect(&server.url()).await;
    let back = again.resume(&welcome).await;
    let history = back["history"].as_array().unwrap();
    assert_eq!(history.len(), 300);
    assert_eq!(
        history[history.len() - 2]["id"],
        "m159",
        "the latest entries"
    );
    assert_eq!(again.ask("m160", "hello").await["kind"], "answer");
    server.stop().await;
}

#[tokio::test]
async fn card_numbers_never_reach_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start_logging(dir.path(), "trace");
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    let reply = v
        .ask("m1", "my card 4111 1111 1111 1111 was charged twice")
        .await;
    assert_eq!(reply["kind"], "escalate");
    v.send(json!({"type": "message", "id": "m2", "text": "it was 4111-1111-1111-1111"}))
        .await;
    assert_eq!(v.expect("offline").await["type"], "offline");
    loop {
        if v.recv().await["type"] == "ack" {
            break;
        }
    }
    let log = server.log();
    assert!(
        log.contains("[redacted]"),
        "visitor text is logged at trace, redacted"
    );
    for needle in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
    ] {
        assert!(!log.contains(needle), "{needle} found in the log");
    }
    server.kill();
}

/// The next thing on a socket that is not a text or ping frame: a close
/// frame's code, or `None` when the connection ended without one.
async fn closed_with(v: &mut Visitor) -> Option<u16> {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), v.ws.next())
            .await
            .expect("the connection ends within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_quiet_client_is_closed_and_one_that_talks_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.idle_timeout_secs = 1;
    let server = TestServer::start(cfg).await;
    let mut quiet = Visitor::connect(&server.url()).await;
    quiet.hello().await;
    let mut talker = Visitor::connect(&server.url()).await;
    talker.hello().await;
    // Over three times the idle timeout, never quiet for a whole one.
    for i in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let reply = talker.ask(&format!("m{i}"), "hello").await;
        assert_eq!(reply["source"]["id"], "greeting");
    }
    assert_eq!(closed_with(&mut quiet).await, Some(1001));
    // Once the talker falls quiet too, it goes the same way.
    assert_eq!(closed_with(&mut talker).await, Some(1001));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_holds_up_no_one() {
    use futures_util::{SinkExt, StreamExt};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.write_timeout_secs = 1;
    cfg.limits.frames_per_second = 0;
    let server = TestServer::start(cfg).await;
    let connections = |body: String| {
        common::metric(&body, "frontdesk_websocket_connections{kind=\"visitor\"}") as u32
    };

    // The client reads nothing, so the replies fill its small receive buffer
    // and then the server's send buffer (up to 4 MiB on loopback), and the
    // server's writes stall.
    const SENT_AT_MOST: u32 = 30_000;
    let (ws, _) = common::connect_with_small_receive_buffer(server.addr, server.url()).await;
    let mut slow = Visitor { ws };
    slow.hello().await;
    let (mut tx, mut rx) = slow.ws.split();
    let sending = tokio::spawn(async move {
        let mut sent = 0u32;
        for i in 0..SENT_AT_MOST {
            let frame = json!({"type": "message", "id": format!("s{i}"), "text": "How long does delivery take?"});
            if tx
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    });

    // Meanwhile another visitor is answered as usual.
    let mut other = Visitor::connect(&server.url()).await;
    other.hello().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(other.ask("o1", "hello").await["source"]["id"], "greeting");

    // The server gives up on the slow client: the gauge falls back to one.
    let mut open = 2;
    for _ in 0..100 {
        open = connections(common::http_get(server.addr, "/metrics", &[]).await.body);
        if open == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        open, 1,
        "the client that stopped reading is still connected"
    );
    assert_eq!(
        common::scrape(
            server.addr,
            "frontdesk_connections_dropped_total{reason=\"too_slow\"}"
        )
        .await,
        1.0
    );
    // What it is sent before its connection ends is far less than it asked.
    let mut replies = 0;
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.next()).await
    {
        if msg.to_text().is_ok_and(|t| t.contains("\"reply\"")) {
            replies += 1;
        }
    }
    let sent = sending.await.unwrap();
    assert!(
        replies < sent,
        "{replies} replies reached a client that was not reading"
    );
    assert_eq!(other.ask("o2", "hello").await["source"]["id"], "greeting");
    server.stop().await;
}
