//! Analytics against a real server: a simulated week of conversations with
//! known outcomes gives exactly the expected figures in /api/stats and
//! `frontdesk stats`; /metrics parses as Prometheus text; gaps group the
//! questions nothing answered.

mod common;

use std::collections::HashMap;

use common::{config, http_get, Agent, TestServer, Visitor};
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;
/// Monday 2026-11-16, 00:00 UTC: the simulated week starts here.
const MONDAY: i64 = 1_794_787_200_000;

/// Moves a conversation's times as if it had happened at `start`: every
/// stored time keeps its distance from the conversation's creation.
async fn happened_at(server: &TestServer, id: &str, start: i64) {
    let id = id.to_string();
    server
        .app
        .store()
        .run(move |c| {
            let created: i64 = c.query_row(
                "SELECT created_at FROM conversations WHERE id = ?1",
                [&id],
                |r| r.get(0),
            )?;
            let shift = start - created;
            c.execute(
                "UPDATE conversations SET created_at = created_at + ?2, updated_at = updated_at + ?2,
                        queued_at = queued_at + ?2, claimed_at = claimed_at + ?2, closed_at = closed_at + ?2
                 WHERE id = ?1",
                (&id, shift),
            )?;
            for table in ["messages", "decisions", "feedback"] {
                c.execute(
                    &format!("UPDATE {table} SET created_at = created_at + ?2 WHERE conversation_id = ?1"),
                    (&id, shift),
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

/// Sets how long after queueing the agent's first message came.
async fn agent_replied_after(server: &TestServer, id: &str, seconds: i64) {
    let id = id.to_string();
    server
        .app
        .store()
        .run(move |c| {
            c.execute(
                "UPDATE messages SET created_at = (SELECT queued_at FROM conversations WHERE id = ?1) + ?2
                 WHERE conversation_id = ?1 AND role = 'agent'",
                (&id, seconds * 1000),
            )?;
            Ok(())
        })
        .await
        .unwrap();
}

struct Script<'a> {
    server: &'a TestServer,
    agent: Agent,
}

impl Script<'_> {
    async fn visitor(&self) -> (Visitor, String) {
        let mut v = Visitor::connect(&self.server.url()).await;
        let w = v.hello().await;
        (v, w["conversation_id"].as_str().unwrap().to_string())
    }

    /// Asks about delivery times and gets the article's answer.
    async fn answered(&self, v: &mut Visitor, id: &str) -> Value {
        let reply = v.ask(id, "how long does delivery take").await;
        assert_eq!(reply["kind"], "answer", "{reply}");
        reply
    }

    async fn close(&self, v: &mut Visitor, rating: Option<u8>) -> String {
        v.send(json!({"type": "close"})).await;
        let outcome = v.expect("closed").await["outcome"]
            .as_str()
            .unwrap()
            .to_string();
        if let Some(score) = rating {
            v.send(json!({"type": "rating", "score": score})).await;
        }
        outcome
    }

    /// Deflected: answered, maybe marked helpful, closed with a rating.
    async fn deflected(&mut self, helpful: bool, rating: Option<u8>) -> String {
        let (mut v, id) = self.visitor().await;
        let reply = self.answered(&mut v, "m1").await;
        if helpful {
            v.send(json!({"type": "feedback", "answer_id": reply["answer_id"], "helpful": true}))
                .await;
        }
        assert_eq!(self.close(&mut v, rating).await, "deflected");
        id
    }

    /// Escalated on request; an agent claims, replies and closes it.
    async fn escalated(&mut self, rating: Option<u8>) -> String {
        let (mut v, id) = self.visitor().await;
        let reply = v.ask("m1", "can I talk to a human please").await;
        assert_eq!(reply["kind"], "escalate");
        v.expect("queue").await;
        self.agent
            .send(json!({"type": "claim", "conversation_id": id}))
            .await;
        self.agent
            .expect_where("conversation", |f| {
                f["conversation"]["conversation_id"] == id
            })
            .await;
        self.agent
            .send(json!({"type": "message", "conversation_id": id, "id": format!("{id}-g"), "text": "Hello, I can help."}))
            .await;
        self.agent.expect("ack").await;
        self.agent
            .send(json!({"type": "close", "conversation_id": id, "note": "helped"}))
            .await;
        v.expect("agent_joined").await;
        v.expect("agent_message").await;
        assert_eq!(v.expect("closed").await["outcome"], "escalated");
        if let Some(score) = rating {
            v.send(json!({"type": "rating", "score": score})).await;
        }
        id
    }

    /// Unanswered: one question nothing answers, then closed.
    async fn unanswered(&mut self, question: &str) -> String {
        let (mut v, id) = self.visitor().await;
        let reply = v.ask("m1", question).await;
        assert_eq!(reply["kind"], "fallback", "{reply}");
        assert_eq!(self.close(&mut v, None).await, "unanswered");
        id
    }

    /// A greeting and nothing else.
    async fn greeting_only(&mut self) -> String {
        let (mut v, id) = self.visitor().await;
        let reply = v.ask("m1", "hello").await;
        assert_eq!(reply["source"]["id"], "greeting");
        assert_eq!(self.close(&mut v, None).await, "no_question");
        id
    }
}

#[tokio::test]
async fn a_simulated_week_gives_exactly_the_expected_figures() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let admin_token = frontdesk::handoff::random_token(32);
    server
        .app
        .store()
        .add_agent(
            "boss".into(),
            frontdesk::handoff::hash_token(&admin_token),
            true,
        )
        .await
        .unwrap();
    let agent_token = server.add_agent("sam").await;
    let (agent, _) = Agent::sign_in(&server.agent_url(), &agent_token).await;
    let mut s = Script {
        server: &server,
        agent,
    };

    // day 0 (Mon): 2 deflected (1 confirmed, rated 5 and 4), 1 escalated (rated 2, waited 90 s)
    // day 2 (Wed): 1 deflected (assumed, no rating), 1 unanswered
    // day 4 (Fri): 1 escalated (waited 30 s, rated 5), 1 unanswered
    let mut plan: Vec<(String, i64)> = Vec::new();
    plan.push((s.deflected(true, Some(5)).await, 0));
    plan.push((s.deflected(false, Some(4)).await, 0));
    let e1 = s.escalated(Some(2)).await;
    agent_replied_after(&server, &e1, 90).await;
    plan.push((e1, 0));
    plan.push((s.deflected(false, None).await, 2));
    plan.push((s.unanswered("who won the football yesterday").await, 2));
    let e2 = s.escalated(Some(5)).await;
    agent_replied_after(&server, &e2, 30).await;
    plan.push((e2, 4));
    plan.push((s.unanswered("who won the football last night").await, 4));
    let greeting = s.greeting_only().await;
    for (i, (id, day)) in plan.iter().enumerate() {
        // Spread within the day so nothing lands on a bucket edge.
        happened_at(
            &server,
            id,
            MONDAY + day * DAY + 9 * 3_600_000 + i as i64 * 60_000,
        )
        .await;
    }
    happened_at(&server, &greeting, MONDAY + 5 * DAY).await;

    // Only admins may read the figures.
    let path = "/api/stats?from=2026-11-16&to=2026-11-23&bucket=day";
    assert_eq!(http_get(server.addr, path, &[]).await.status, 401);
    let bearer = format!("Bearer {agent_token}");
    assert_eq!(
        http_get(server.addr, path, &[("Authorization", &bearer)])
            .await
            .status,
        403
    );
    let bearer = format!("Bearer {admin_token}");
    let r = http_get(server.addr, path, &[("Authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stats: Value = serde_json::from_str(&r.body).unwrap();
    let t = &stats["totals"];

    // The greeting (small talk) counts in none of the outcomes.
    assert_eq!(t["no_question"], 1, "a greeting is not a question: {t}");
    assert_eq!(t["conversations"], 7);
    assert_eq!(t["deflected"], 3);
    assert_eq!(t["deflected_confirmed"], 1);
    assert_eq!(t["deflected_assumed"], 2);
    assert_eq!(t["escalated"], 2);
    assert_eq!(t["escalated_by_reason"]["requested"], 2);
    assert_eq!(t["unanswered"], 2);
    assert_eq!(t["deflection_rate"].as_f64().unwrap(), 3.0 / 7.0);
    assert_eq!(t["confirmed_resolution_rate"].as_f64().unwrap(), 1.0 / 7.0);
    assert_eq!(t["csat"]["responses"], 4);
    assert_eq!(t["csat"]["mean"].as_f64().unwrap(), 4.0);
    assert_eq!(t["csat"]["satisfied"].as_f64().unwrap(), 0.75);
    assert_eq!(t["queue_wait"]["count"], 2);
    assert_eq!(t["queue_wait"]["median_seconds"].as_f64().unwrap(), 30.0);
    assert_eq!(t["queue_wait"]["p90_seconds"].as_f64().unwrap(), 90.0);
    assert_eq!(t["queue_wait"]["mean_seconds"].as_f64().unwrap(), 60.0);

    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len(), 7);
    let per_day: Vec<(i64, i64, i64, i64)> = series
        .iter()
        .map(|p| {
            (
                p["conversations"].as_i64().unwrap(),
                p["deflected"].as_i64().unwrap(),
                p["escalated"].as_i64().unwrap(),
                p["unanswered"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_day,
        [
            (3, 2, 1, 0),
            (0, 0, 0, 0),
            (2, 1, 0, 1),
            (0, 0, 0, 0),
            (2, 0, 1, 1),
            (0, 0, 0, 0),
            (0, 0, 0, 0)
        ]
    );
    assert_eq!(series[0]["start"], MONDAY);
    assert_eq!(series[0]["deflection_rate"].as_f64().unwrap(), 2.0 / 3.0);

    // Answers per article, with their feedback.
    let articles = stats["articles"].as_array().unwrap();
    let times = articles
        .iter()
        .find(|a| a["id"] == "shipping/times.md")
        .unwrap_or_else(|| panic!("{articles:?}"));
    assert_eq!(times["answered"], 3);
    assert_eq!(times["helpful"], 1);
    assert_eq!(times["not_helpful"], 0);
    assert_eq!(times["title"], "How long does delivery take?");

    // The command line reads the same database and agrees.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args([
            "stats",
            "--json",
            "--from",
            "2026-11-16",
            "--to",
            "2026-11-23",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["totals"], stats["totals"]);
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args([
            "stats",
            "--from",
            "2026-11-16",
            "--to",
            "2026-11-23",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("deflection rate         42.9%"), "{table}");

    // CSV: a header and one row per day.
    let csv = http_get(
        server.addr,
        "/api/stats.csv?from=2026-11-16&to=2026-11-23",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 8);
    assert!(
        lines[1].starts_with("2026-11-16T00:00:00Z,3,2,1,1,1,0,"),
        "{}",
        lines[1]
    );

    // Gaps: the two football questions form one group.
    let gaps = http_get(
        server.addr,
        "/api/gaps?from=2026-11-16&to=2026-11-23",
        &[("Authorization", &bearer)],
    )
    .await;
    let gaps: Value = serde_json::from_str(&gaps.body).unwrap();
    assert_eq!(gaps["gaps"][0]["count"], 2, "{gaps}");
    assert_eq!(gaps["gaps"][0]["unanswered"], 2);
    server.stop().await;
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    assert_eq!(
        v.ask("m1", "how long does delivery take").await["kind"],
        "answer"
    );
    // Asked again word for word, the decision is kept; the third time it is
    // the one remembered.
    for id in ["m1b", "m1c"] {
        assert_eq!(
            v.ask(id, "how long does delivery take").await["kind"],
            "answer"
        );
    }
    assert_eq!(
        v.ask("m2", "who won the football yesterday").await["kind"],
        "fallback"
    );
    v.send(json!({"type": "close"})).await;
    assert_eq!(v.expect("closed").await["outcome"], "deflected");

    let r = http_get(server.addr, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .contains("content-type: text/plain; version=0.0.4"));
    let lines = r.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let mut values: HashMap<String, f64> = HashMap::new();
    for s in &scrape.samples {
        let labels: Vec<String> = {
            let mut l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            l.sort();
            l
        };
        let v = match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => continue,
        };
        values.insert(format!("{}{{{}}}", s.metric, labels.join(",")), v);
    }
    let get = |k: &str| {
        *values
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing: {values:?}"))
    };
    assert_eq!(get("frontdesk_messages_total{role=visitor}"), 4.0);
    assert_eq!(get("frontdesk_decisions_total{kind=answer}"), 3.0);
    assert_eq!(
        get("frontdesk_decision_cache_lookups_total{result=hit}"),
        1.0
    );
    assert_eq!(
        get("frontdesk_decision_cache_lookups_total{result=miss}"),
        3.0
    );
    assert_eq!(get("frontdesk_decisions_total{kind=fallback}"), 1.0);
    assert_eq!(
        get("frontdesk_conversations_closed_total{outcome=deflected}"),
        1.0
    );
    assert_eq!(get("frontdesk_websocket_connections{kind=visitor}"), 1.0);
    assert_eq!(get("frontdesk_queue_length{}"), 0.0);
    assert_eq!(get("frontdesk_content_intents{}"), 3.0);
    // Every decision was timed.
    assert_eq!(get("frontdesk_decision_seconds{}"), 4.0);
    // And every reply, from its question read to its reply written (the
    // last one before the close frame was read).
    assert_eq!(get("frontdesk_reply_seconds{}"), 4.0);
    // So was every group commit: at least the conversation, its four turns
    // and its closing, each measured once for its time and once for its size.
    let commits = get("frontdesk_store_commit_seconds{}");
    assert!(commits >= 6.0, "{commits} commits");
    assert_eq!(get("frontdesk_store_commit_jobs{}"), commits);
    assert_eq!(get("frontdesk_store_wal_restart_seconds{}"), 0.0);
    assert!(scrape
        .docs
        .get("frontdesk_decision_seconds")
        .is_some_and(|d| d.contains("decide")));
    assert!(scrape
        .docs
        .get("frontdesk_reply_seconds")
        .is_some_and(|d| d.contains("reply written")));
    // The process collector's figures, under their usual names: the open
    // descriptors include the visitor's connection, on both of its ends here.
    let open = get("process_open_fds{}");
    assert!(open >= 2.0, "{open} open descriptors");
    assert!(get("process_max_fds{}") >= open);
    assert!(get("process_resident_memory_bytes{}") > 0.0);
    assert!(get("process_cpu_seconds_total{}") > 0.0);
    server.stop().await;
}

/// A reply's latency (`frontdesk_reply_seconds`) runs from its frame's
/// arrival at the server's socket, so a frame that waits there behind an
/// earlier one counts the wait. Counted from its reading instead, the second
/// reply below would take a few milliseconds.
#[tokio::test]
async fn a_replys_latency_counts_its_frames_wait_to_be_read() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    const HELD: std::time::Duration = std::time::Duration::from_millis(400);

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    v.hello().await;
    assert_eq!(
        v.ask("w0", "how long does delivery take").await["kind"],
        "answer"
    );
    let before = reply_buckets(&server).await;
    // Another connection holds the database's write lock, so the store's
    // next commit waits until it lets go.
    let db = rusqlite::Connection::open(dir.path().join("frontdesk.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Two messages in one write: the second arrives with the first, and its
    // session reads it only once the first's reply is out.
    for id in ["w1", "w2"] {
        let frame = json!({"type": "message", "id": id, "text": "how long does delivery take"});
        v.ws.feed(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }
    v.ws.flush().await.unwrap();
    tokio::time::sleep(HELD).await;
    db.execute_batch("COMMIT").unwrap();
    for id in ["w1", "w2"] {
        assert_eq!(v.expect("ack").await["id"], id);
        assert_eq!(v.expect("reply").await["kind"], "answer");
    }

    let after = reply_buckets(&server).await;
    let count = |buckets: &[prometheus_parse::HistogramCount], le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le)
            .unwrap_or_else(|| panic!("no bucket {le}: {buckets:?}"))
            .count
    };
    assert_eq!(
        count(&after, f64::INFINITY),
        count(&before, f64::INFINITY) + 2.0,
        "{after:?}"
    );
    // Both waited for the lock: neither is counted as quicker than it held.
    assert_eq!(count(&after, 0.25), count(&before, 0.25), "{after:?}");
    server.stop().await;
}

/// The buckets of `frontdesk_reply_seconds`, from `/metrics`.
async fn reply_buckets(server: &TestServer) -> Vec<prometheus_parse::HistogramCount> {
    let r = http_get(server.addr, "/metrics", &[]).await;
    let lines = r.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    scrape
        .samples
        .into_iter()
        .find_map(|s| match s.value {
            prometheus_parse::Value::Histogram(h) if s.metric == "frontdesk_reply_seconds" => {
                Some(h)
            }
            _ => None,
        })
        .expect("frontdesk_reply_seconds")
}

#[tokio::test]
async fn an_idle_conversation_closes_and_reopens_when_the_visitor_returns() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    assert_eq!(
        v.ask("m1", "how long does delivery take").await["kind"],
        "answer"
    );
    // Everything older than a second from now counts as idle.
    let closed = server
        .app
        .store()
        .close_idle(frontdesk::store::now_ms() + 1000)
        .await
        .unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].1, "deflected");
    drop(v);

    // Back within the window: the same conversation, reopened.
    let mut again = Visitor::connect(&server.url()).await;
    let back = again.resume(&welcome).await;
    assert_eq!(back["conversation_id"], welcome["conversation_id"]);
    assert_eq!(back["state"], "bot");
    assert_eq!(
        again.ask("m2", "who won the football yesterday").await["kind"],
        "fallback"
    );
    again.send(json!({"type": "close"})).await;
    assert_eq!(again.expect("closed").await["outcome"], "deflected");

    // Closed by the visitor: a return starts a new conversation.
    let mut third = Visitor::connect(&server.url()).await;
    let fresh = third.resume(&welcome).await;
    assert_ne!(fresh["conversation_id"], welcome["conversation_id"]);
    server.stop().await;
}
