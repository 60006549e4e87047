//! Human handoff against a real server: the queue, agents signing in,
//! claims, the relay both ways, offline tickets, and a restart in the middle.

mod common;

use common::{config, Agent, Process, TestServer, Visitor};
use serde_json::{json, Value};

/// A visitor who asked for a person and is queued.
async fn queued_visitor(server_url: &str) -> (Visitor, Value) {
    let mut v = Visitor::connect(server_url).await;
    let welcome = v.hello().await;
    let reply = v.ask("m1", "can I talk to a human please").await;
    assert_eq!(reply["kind"], "escalate");
    loop {
        let f = v.recv().await;
        if f["type"] == "queue" {
            break;
        }
        assert_eq!(f["type"], "offline", "{f}");
    }
    (v, welcome)
}

#[tokio::test]
async fn two_agents_racing_for_one_claim_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (ann_token, bob_token) = (server.add_agent("ann").await, server.add_agent("bob").await);
    let (mut v, welcome) = queued_visitor(&server.url()).await;
    let id = welcome["conversation_id"].clone();
    let (mut ann, ann_welcome) = Agent::sign_in(&server.agent_url(), &ann_token).await;
    let (mut bob, _) = Agent::sign_in(&server.agent_url(), &bob_token).await;
    assert_eq!(ann_welcome["queue"][0]["conversation_id"], id);
    assert_eq!(ann_welcome["queue"][0]["reason"], "requested");

    // Both send their claim before either reads an answer.
    ann.send(json!({"type": "claim", "conversation_id": id}))
        .await;
    bob.send(json!({"type": "claim", "conversation_id": id}))
        .await;
    let mut winners = Vec::new();
    for (name, agent) in [("ann", &mut ann), ("bob", &mut bob)] {
        // Each hears the same holder...
        let update = agent
            .expect_where("update", |f| f["conversation_id"] == id)
            .await;
        assert_eq!(update["state"], "with_agent");
        let holder = update["agent"].as_str().unwrap().to_string();
        // ...and is either given the conversation or told who has it.
        if holder == name {
            winners.push(name);
            let conv = agent.expect("conversation").await;
            assert_eq!(conv["conversation"]["agent"], name);
        } else {
            let refused = agent
                .expect_where("error", |f| f["conversation_id"] == id)
                .await;
            assert_eq!(refused["code"], "already_claimed", "{name}: {refused}");
            assert!(refused["message"].as_str().unwrap().contains(&holder));
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
    let winner = winners[0];

    // The visitor hears of exactly one agent.
    let joined = v.expect("agent_joined").await;
    assert_eq!(joined["name"], winner);
    server.stop().await;
}

#[tokio::test]
async fn messages_typing_and_notes_relay_between_visitor_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let token = server.add_agent("sam").await;
    let (mut v, welcome) = queued_visitor(&server.url()).await;
    let id = welcome["conversation_id"].clone();
    let (mut sam, _) = Agent::sign_in(&server.agent_url(), &token).await;

    // Written while queued: kept, and shown to agents.
    v.send(json!({"type": "message", "id": "m2", "text": "order FD-123456 never arrived"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m2");
    let seen = sam.expect("visitor_message").await;
    assert_eq!(seen["text"], "order FD-123456 never arrived");

    sam.send(json!({"type": "claim", "conversation_id": id}))
        .await;
    let conv = sam.expect("conversation").await["conversation"].clone();
    assert_eq!(conv["agent"], "sam");
    let history = conv["history"].as_array().unwrap();
    let texts: Vec<&str> = history
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&"order FD-123456 never arrived"),
        "{texts:?}"
    );
    let bot = history.iter().find(|h| h["role"] == "bot").unwrap();
    assert!(bot["explanation"]["rule"].is_string(), "{bot}");
    assert_eq!(v.expect("agent_joined").await["name"], "sam");

    // Agent to visitor, with typing.
    sam.send(json!({"type": "typing", "conversation_id": id}))
        .await;
    assert_eq!(v.expect("typing").await["type"], "typing");
    sam.send(json!({"type": "message", "conversation_id": id, "id": "g1", "text": "Let me check that order."}))
        .await;
    assert_eq!(sam.expect("ack").await["id"], "g1");
    let said = v.expect("agent_message").await;
    assert_eq!(said["text"], "Let me check that order.");
    assert_eq!(said["name"], "sam");

    // Visitor to agent, with typing.
    v.send(json!({"type": "typing"})).await;
    assert_eq!(sam.expect("typing").await["conversation_id"], id);
    v.send(json!({"type": "message", "id": "m3", "text": "thanks!"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m3");
    assert_eq!(sam.expect("visitor_message").await["text"], "thanks!");

    // A note reaches agents only.
    sam.send(
        json!({"type": "note", "conversation_id": id, "id": "n1", "text": "customer sounds upset"}),
    )
    .await;
    assert_eq!(sam.expect("ack").await["id"], "n1");
    assert_eq!(sam.expect("note").await["text"], "customer sounds upset");

    // Release puts it back in the queue; the visitor is told, then closes.
    sam.send(json!({"type": "release", "conversation_id": id}))
        .await;
    assert_eq!(v.expect("agent_left").await["name"], "sam");
    assert_eq!(v.expect("queue").await["position"], 1);
    sam.send(json!({"type": "claim", "conversation_id": id}))
        .await;
    assert_eq!(v.expect("agent_joined").await["name"], "sam");
    sam.send(json!({"type": "close", "conversation_id": id, "note": "resent the parcel"}))
        .await;
    assert_eq!(v.expect("closed").await["outcome"], "escalated");

    // The visitor never saw the note, and the stored transcript has it all.
    let stored = server
        .app
        .store()
        .agent_conversation(id.as_str().unwrap().to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, "closed");
    assert_eq!(stored.resolution.as_deref(), Some("resent the parcel"));
    assert_eq!(stored.notes.len(), 1);
    let resumed = server
        .app
        .store()
        .load_conversation(id.as_str().unwrap().to_string())
        .await
        .unwrap()
        .unwrap();
    assert!(resumed.history.iter().all(|h| !h.text.contains("upset")));
    assert!(resumed
        .history
        .iter()
        .any(|h| h.role == "agent" && h.name.as_deref() == Some("sam")));
    server.stop().await;
}

#[tokio::test]
async fn agents_cannot_act_on_conversations_they_do_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (ann_token, bob_token) = (server.add_agent("ann").await, server.add_agent("bob").await);
    let (mut v, welcome) = queued_visitor(&server.url()).await;
    let id = welcome["conversation_id"].clone();
    let (mut ann, _) = Agent::sign_in(&server.agent_url(), &ann_token).await;
    let (mut bob, _) = Agent::sign_in(&server.agent_url(), &bob_token).await;

    bob.send(json!({"type": "message", "conversation_id": id, "id": "b1", "text": "hi"}))
        .await;
    assert_eq!(bob.expect("error").await["code"], "not_yours");
    ann.send(json!({"type": "claim", "conversation_id": id}))
        .await;
    ann.expect("conversation").await;
    bob.send(json!({"type": "close", "conversation_id": id}))
        .await;
    assert_eq!(bob.expect("error").await["code"], "not_yours");

    // A transfer hands it, whole, to bob.
    ann.send(json!({"type": "transfer", "conversation_id": id, "to": "nobody"}))
        .await;
    assert_eq!(ann.expect("error").await["code"], "unknown_agent");
    ann.send(json!({"type": "transfer", "conversation_id": id, "to": "bob"}))
        .await;
    let handed = bob.expect("conversation").await;
    assert_eq!(handed["conversation"]["agent"], "bob");
    assert_eq!(v.expect("agent_joined").await["name"], "ann");
    assert_eq!(v.expect("agent_left").await["name"], "ann");
    assert_eq!(v.expect("agent_joined").await["name"], "bob");
    bob.send(json!({"type": "message", "conversation_id": id, "id": "b2", "text": "Bob here."}))
        .await;
    assert_eq!(v.expect("agent_message").await["name"], "bob");
    ann.send(json!({"type": "message", "conversation_id": id, "id": "a2", "text": "still me?"}))
        .await;
    assert_eq!(ann.expect("error").await["code"], "not_yours");
    server.stop().await;
}

#[tokio::test]
async fn a_bad_token_is_refused_and_the_socket_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    server.add_agent("sam").await;
    let mut a = Agent::connect(&server.agent_url()).await;
    a.send(json!({"type": "auth", "token": "0123"})).await;
    assert_eq!(a.expect("error").await["code"], "auth_failed");
    assert!(
        a.next_frame().await.is_none(),
        "closed after a failed sign-in"
    );

    // Anything but auth first is refused too.
    let mut b = Agent::connect(&server.agent_url()).await;
    b.send(json!({"type": "claim", "conversation_id": "c"}))
        .await;
    assert_eq!(b.expect("error").await["code"], "auth_required");
    assert!(b.next_frame().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn outside_hours_the_visitor_leaves_a_ticket_that_an_agent_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // A week with no open hours at all.
    cfg.handoff.hours.insert("mon".into(), String::new());
    let server = TestServer::start(cfg).await;
    let token = server.add_agent("sam").await;

    let mut v = Visitor::connect(&server.url()).await;
    let welcome = v.hello().await;
    let reply = v.ask("m1", "can I talk to a human please").await;
    assert_eq!(reply["kind"], "escalate");
    let offline = v.expect("offline").await;
    assert_eq!(offline["reason"], "outside_hours");
    assert_eq!(reply["text"], offline["message"]);

    v.send(
        json!({"type": "leave_message", "id": "m2", "email": "not an email", "text": "call me"}),
    )
    .await;
    assert_eq!(v.expect("error").await["code"], "invalid_email");
    v.send(json!({"type": "leave_message", "id": "m2", "email": "ann@example.com", "text": "My parcel FD-123456 is late"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m2");
    let ticket_id = v.expect("ticket").await["ticket_id"].clone();

    // Not queued: the queue is empty, and the ticket is waiting for the team.
    let (mut sam, hello) = Agent::sign_in(&server.agent_url(), &token).await;
    assert!(hello["queue"].as_array().unwrap().is_empty(), "{hello}");
    let ticket = &hello["tickets"][0];
    assert_eq!(ticket["ticket_id"], ticket_id);
    assert_eq!(ticket["email"], "ann@example.com");
    assert_eq!(ticket["reason"], "outside_hours");
    assert_eq!(ticket["conversation_id"], welcome["conversation_id"]);

    sam.send(json!({"type": "answer_ticket", "ticket_id": ticket_id, "id": "t1", "text": "It arrives tomorrow."}))
        .await;
    assert_eq!(sam.expect("ack").await["id"], "t1");
    let tickets = sam.expect("tickets").await;
    assert_eq!(tickets["tickets"][0]["answer"], "It arrives tomorrow.");
    assert_eq!(tickets["tickets"][0]["answered_by"], "sam");
    // The visitor, still here, sees the answer; on return it is in the history.
    assert_eq!(
        v.expect("agent_message").await["text"],
        "It arrives tomorrow."
    );
    drop(v);
    let mut again = Visitor::connect(&server.url()).await;
    let back = again.resume(&welcome).await;
    let history = back["history"].as_array().unwrap();
    assert!(history
        .iter()
        .any(|h| h["role"] == "agent" && h["text"] == "It arrives tomorrow."));
    server.stop().await;
}

#[tokio::test]
async fn sensitive_conversations_go_to_the_front_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let token = server.add_agent("sam").await;
    let (_first, first) = queued_visitor(&server.url()).await;
    let mut urgent = Visitor::connect(&server.url()).await;
    let second = urgent.hello().await;
    let reply = urgent
        .ask("m1", "my card 4111 1111 1111 1111 was charged twice")
        .await;
    assert_eq!(reply["kind"], "escalate");
    let (_sam, hello) = Agent::sign_in(&server.agent_url(), &token).await;
    let queue = hello["queue"].as_array().unwrap();
    assert_eq!(queue.len(), 2);
    assert_eq!(queue[0]["conversation_id"], second["conversation_id"]);
    assert_eq!(queue[0]["priority"], "sensitive");
    assert_eq!(queue[1]["conversation_id"], first["conversation_id"]);
    assert!(!queue[0]["last_message"].as_str().unwrap().contains("4111"));
    server.stop().await;
}

/// `frontdesk agent add` through the binary; returns the printed token.
fn add_agent_with_cli(data: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["agent", "add", name, "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout
        .lines()
        .find(|l| l.len() == 64 && l.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no token in {stdout}"))
        .to_string();
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["agent", "list", "--data"])
        .arg(data)
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains(name), "{listed}");
    assert!(!listed.contains(&token), "the token is shown only once");
    token
}

#[tokio::test]
async fn a_killed_server_keeps_the_queue_assignments_and_transcripts() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_agent_with_cli(dir.path(), "sam");
    assert!(
        !common::database_text(dir.path()).contains(&token),
        "only the token's hash is stored"
    );
    let server = Process::start(dir.path());
    let (mut v, welcome) = queued_visitor(&server.url()).await;
    let (_, waiting) = queued_visitor(&server.url()).await;
    let agent_url = format!("ws://{}/agent/ws", server.addr);
    let (mut sam, _) = Agent::sign_in(&agent_url, &token).await;
    let id = welcome["conversation_id"].clone();
    sam.send(json!({"type": "claim", "conversation_id": id}))
        .await;
    sam.expect("conversation").await;
    sam.send(json!({"type": "message", "conversation_id": id, "id": "g1", "text": "Sam here, looking now."}))
        .await;
    assert_eq!(sam.expect("ack").await["id"], "g1");
    v.expect("agent_joined").await;
    v.expect("agent_message").await;
    v.send(json!({"type": "message", "id": "m2", "text": "it was order FD-222222"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m2");

    server.kill();
    let server = Process::start(dir.path());
    let agent_url = format!("ws://{}/agent/ws", server.addr);

    // The agent gets their conversation back, whole.
    let (mut sam, hello) = Agent::sign_in(&agent_url, &token).await;
    let assigned = hello["assigned"].as_array().unwrap();
    assert_eq!(assigned.len(), 1, "{hello}");
    assert_eq!(assigned[0]["conversation_id"], id);
    let texts: Vec<&str> = assigned[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"Sam here, looking now."), "{texts:?}");
    assert!(texts.contains(&"it was order FD-222222"), "{texts:?}");
    // The other visitor is still waiting.
    assert_eq!(
        hello["queue"][0]["conversation_id"],
        waiting["conversation_id"]
    );

    // The visitor resumes with the agent and they carry on.
    let mut v = Visitor::connect(&server.url()).await;
    let back = v.resume(&welcome).await;
    assert_eq!(back["state"], "with_agent");
    sam.send(json!({"type": "message", "conversation_id": id, "id": "g2", "text": "Found it."}))
        .await;
    assert_eq!(v.expect("agent_message").await["text"], "Found it.");
    // A resent message id is acknowledged but not stored twice.
    v.send(json!({"type": "message", "id": "m2", "text": "it was order FD-222222"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m2");
    v.send(json!({"type": "message", "id": "m3", "text": "great"}))
        .await;
    assert_eq!(v.expect("ack").await["id"], "m3");
    // Had the resend been relayed, it would have arrived before this one.
    assert_eq!(sam.expect("visitor_message").await["text"], "great");
    sam.send(json!({"type": "open", "conversation_id": id}))
        .await;
    let conv = sam.expect("conversation").await;
    let count = conv["conversation"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["text"] == "it was order FD-222222")
        .count();
    assert_eq!(count, 1, "stored once");
    server.kill();
}

/// The state of the server's end of a loopback TCP connection, as
/// `/proc/net/tcp` gives it ("01" while established); `None` once it is gone.
fn server_end_state(server_port: u16, client_port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
        (port(fields[1])? == server_port && port(fields[2])? == client_port)
            .then(|| fields[3].to_string())
    })
}

#[tokio::test]
async fn an_agent_console_that_stops_reading_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.frames_per_second = 0;
    let server = TestServer::start(cfg).await;
    let token = server.add_agent("sam").await;
    let (mut v, _) = queued_visitor(&server.url()).await;

    // A console with a small receive buffer signs in, then reads nothing.
    let (ws, client_port) =
        common::connect_with_small_receive_buffer(server.addr, server.agent_url()).await;
    let mut stuck = Agent::from_ws(ws);
    stuck.send(json!({"type": "auth", "token": token})).await;
    stuck.expect("welcome").await;
    let established = || server_end_state(server.addr.port(), client_port).as_deref() == Some("01");
    assert!(established());

    // The queued visitor writes long messages (within the conversation's
    // length limit), and each goes to every console: about 11 MB, which fills
    // the socket's buffers (up to 4 MiB on loopback), then the console's queue.
    let text = "x".repeat(12_000);
    for i in 0..900 {
        v.send(json!({"type": "message", "id": format!("long{i}"), "text": text}))
            .await;
        // Queue positions may come in between.
        let ack = loop {
            let f = v.recv().await;
            if f["type"] != "queue" {
                break f;
            }
        };
        assert_eq!(ack["type"], "ack", "{ack}");
        if !established() {
            break;
        }
    }
    // The server lets go of its end within moments of giving up on it.
    for _ in 0..50 {
        if !established() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !established(),
        "the server still holds the connection of a console that does not read"
    );
    server.stop().await;
}
