//! One agent's websocket session: sign-in with a token in the first frame,
//! then the queue, claims, the relay to visitors, notes and offline tickets.
//! Every change is stored before anyone is told about it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::App;
use crate::analytics::Rejection;
use crate::handoff::{hash_token, same_secret, VisitorEvent};
use crate::protocol::agent::{self, AgentFrame, AgentServerFrame};
use crate::protocol::{codes, ServerFrame};
use crate::store::{Refusal, StoreError, Written};

/// Close code after a failed sign-in.
const CLOSE_POLICY: u16 = 1008;
const CLOSE_RESTART: u16 = 1012;
const CLOSE_GOING_AWAY: u16 = 1001;
/// Agents' consoles sit idle for long stretches: the server pings, and the
/// browser's pongs keep the connection counted as alive.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Offline tickets sent to the console.
pub(super) const TICKETS_SHOWN: usize = 200;

static NEXT_AGENT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `GET /agent/ws`.
pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    headers: axum::http::HeaderMap,
    ConnectInfo(peer): ConnectInfo<super::guard::Peer>,
    State(app): State<App>,
) -> Response {
    let limits = &app.config().limits;
    let ws = ws
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes);
    let ip = peer.addr.ip();
    app.accept(ws, &headers, peer, move |socket, app| {
        let id = NEXT_AGENT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run(socket, app, ip, id).instrument(tracing::info_span!("agent", conn = id))
    })
}

struct Session {
    app: App,
    out: mpsc::Sender<Message>,
    name: String,
    too_slow: bool,
}

async fn run(socket: WebSocket, app: App, ip: IpAddr, conn: u64) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(app.config().limits.outbound_queue.max(256));
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let is_close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || is_close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let close = |out: &mpsc::Sender<Message>, code: u16, reason: &'static str| {
        let _ = out.try_send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })));
    };
    let send = |out: &mpsc::Sender<Message>, frame: AgentServerFrame| {
        let _ = out.try_send(Message::Text(frame.to_json().into()));
    };

    // Sign in: the first frame must be `auth`, within the time allowed.
    let auth_timeout = Duration::from_secs(app.config().handoff.auth_timeout_secs);
    let max = app.config().limits.max_message_bytes;
    let token = match tokio::time::timeout(auth_timeout, stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => match agent::decode(text.as_str(), max) {
            Ok(AgentFrame::Auth { token }) => Some(token),
            Ok(_) => {
                send(
                    &out,
                    AgentServerFrame::error(
                        codes::AUTH_REQUIRED,
                        "sign in first: send auth with your token",
                        None,
                    ),
                );
                None
            }
            Err(e) => {
                send(&out, AgentServerFrame::error(e.code, e.message, None));
                None
            }
        },
        _ => None,
    };
    let name = match token {
        Some(token) => sign_in(&app, ip, &token, &out).await,
        None => None,
    };
    let Some((name, admin)) = name else {
        close(&out, CLOSE_POLICY, "not signed in");
        drop(out);
        let_go(writer).await;
        return;
    };
    tracing::info!(agent = %name, "agent signed in");
    app.metrics().connection(true, 1);

    let (events_tx, mut events) = mpsc::channel::<Arc<str>>(1024);
    let hub = &app.inner.hub;
    let first = hub.join_agent(&name, conn, events_tx);
    let mut session = Session {
        app: app.clone(),
        out,
        name: name.clone(),
        too_slow: false,
    };
    session.welcome(admin).await;
    if first {
        hub.to_agents(&AgentServerFrame::Online {
            agents: hub.online(),
        });
    }

    let idle = Duration::from_secs(app.config().limits.idle_timeout_secs).max(PING_EVERY * 3);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut shutdown = app.inner.shutdown.clone();
    let mut last_heard = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow_and_update() {
            close(&session.out, CLOSE_RESTART, "server restarting; reconnect");
            break;
        }
        tokio::select! {
            _ = shutdown.changed() => continue,
            _ = ping.tick() => {
                if last_heard.elapsed() > idle {
                    close(&session.out, CLOSE_GOING_AWAY, "idle");
                    break;
                }
                // An agent removed with `frontdesk agent remove` is signed out.
                if let Ok(agents) = app.store().agents().await {
                    if !agents.iter().any(|a| a.name == name) {
                        tracing::info!(agent = %name, "agent removed; signing out");
                        close(&session.out, CLOSE_POLICY, "agent removed");
                        break;
                    }
                }
                let _ = session.out.try_send(Message::Ping(Vec::new().into()));
            }
            Some(json) = events.recv() => session.raw(json),
            next = stream.next() => {
                last_heard = tokio::time::Instant::now();
                match next {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket error");
                        break;
                    }
                    Some(Ok(Message::Text(text))) => session.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => session.send(AgentServerFrame::error(codes::BINARY_FRAME, "frames are UTF-8 JSON text", None)),
                    Some(Ok(_)) => {}
                }
            }
        }
        if session.too_slow {
            session.app.metrics().rejected(Rejection::TooSlow);
            tracing::info!("agent console not reading; closing");
            break;
        }
    }
    if hub.leave_agent(&name, conn) {
        hub.to_agents(&AgentServerFrame::Online {
            agents: hub.online(),
        });
    }
    app.metrics().connection(true, -1);
    tracing::info!(agent = %name, "agent signed out");
    drop(session);
    let_go(writer).await;
}

/// How long an ending session's writer may take to send what is queued.
const WRITER_GRACE: Duration = Duration::from_secs(1);

/// Waits for the writer to send the frames still queued and close the
/// socket; a console that does not read would hold it, and with it the
/// socket, for as long as it stays connected, so it is stopped after
/// [`WRITER_GRACE`], which drops the socket.
async fn let_go(mut writer: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(WRITER_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// The verdict on a presented token.
pub(super) enum SignIn {
    /// The agent's name, and whether they are an admin.
    Agent(String, bool),
    /// No agent has this token.
    Bad,
    /// Too many failures from this address lately.
    Refused,
    /// The agents could not be read.
    Unavailable,
}

/// Checks a token against every agent's hash, in constant time per
/// comparison, after the delay the address has earned by failing before.
pub(super) async fn check_token(app: &App, ip: IpAddr, token: &str) -> SignIn {
    let throttle = &app.inner.throttle;
    let Some(delay) = throttle.delay(ip, std::time::Instant::now()) else {
        tracing::warn!(%ip, "sign-in refused: too many failures");
        return SignIn::Refused;
    };
    tokio::time::sleep(delay).await;
    let agents = match app.store().agents().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "agents not loaded");
            return SignIn::Unavailable;
        }
    };
    let hash = hash_token(token.trim());
    let mut found = None;
    for a in &agents {
        if same_secret(&hash, &a.token_hash) {
            found = Some((a.name.clone(), a.admin));
        }
    }
    match found {
        Some((name, admin)) => {
            throttle.succeeded(ip);
            SignIn::Agent(name, admin)
        }
        None => {
            throttle.failed(ip, std::time::Instant::now());
            tracing::warn!(%ip, "sign-in failed");
            SignIn::Bad
        }
    }
}

/// Signs an agent in, telling the console why not when it fails.
async fn sign_in(
    app: &App,
    ip: IpAddr,
    token: &str,
    out: &mpsc::Sender<Message>,
) -> Option<(String, bool)> {
    let refuse = |code: &'static str, message: &str| {
        let frame = AgentServerFrame::error(code, message, None);
        let _ = out.try_send(Message::Text(frame.to_json().into()));
        None
    };
    match check_token(app, ip, token).await {
        SignIn::Agent(name, admin) => Some((name, admin)),
        SignIn::Bad => refuse(codes::AUTH_FAILED, "that token is not valid"),
        SignIn::Refused => refuse(
            codes::TOO_MANY_ATTEMPTS,
            "too many failed sign-ins from this address; try again in 10 minutes",
        ),
        SignIn::Unavailable => refuse(
            codes::STORE_UNAVAILABLE,
            "sign-in is unavailable; try again",
        ),
    }
}

impl Session {
    fn send(&mut self, frame: AgentServerFrame) {
        self.raw(frame.to_json().into());
    }

    fn raw(&mut self, json: Arc<str>) {
        if self.too_slow {
            return;
        }
        if self
            .out
            .try_send(Message::Text(json.as_ref().into()))
            .is_err()
        {
            self.too_slow = true;
        }
    }

    fn not_stored(&mut self, e: StoreError) {
        tracing::warn!(error = %e, "not stored");
        self.send(AgentServerFrame::error(
            codes::STORE_UNAVAILABLE,
            "not stored; please try again",
            None,
        ));
    }

    fn refused(&mut self, r: Refusal, conversation_id: Option<String>) {
        let (code, message) = match r {
            Refusal::UnknownConversation => (
                codes::UNKNOWN_CONVERSATION,
                "no such conversation".to_string(),
            ),
            Refusal::Closed => (
                codes::CONVERSATION_CLOSED,
                "this conversation is closed".to_string(),
            ),
            Refusal::NotYours(Some(a)) => {
                (codes::NOT_YOURS, format!("{a} holds this conversation"))
            }
            Refusal::NotYours(None) => (
                codes::NOT_YOURS,
                "claim this conversation first".to_string(),
            ),
            Refusal::AlreadyClaimed(Some(a)) => (
                codes::ALREADY_CLAIMED,
                format!("{a} took this conversation"),
            ),
            Refusal::AlreadyClaimed(None) => (
                codes::ALREADY_CLAIMED,
                "someone took this conversation".to_string(),
            ),
            Refusal::NotQueued => (
                codes::NOT_QUEUED,
                "only queued conversations can be claimed".to_string(),
            ),
            Refusal::UnknownAgent => (codes::UNKNOWN_AGENT, "no agent by that name".to_string()),
            Refusal::UnknownTicket => (codes::UNKNOWN_TICKET, "no such ticket".to_string()),
        };
        self.send(AgentServerFrame::error(code, message, conversation_id));
    }

    async fn welcome(&mut self, admin: bool) {
        let store = self.app.store().clone();
        let loaded = async {
            Ok::<_, StoreError>((
                store.queue().await?,
                store.assigned(self.name.clone()).await?,
                store.tickets(TICKETS_SHOWN).await?,
            ))
        }
        .await;
        match loaded {
            Ok((queue, assigned, tickets)) => self.send(AgentServerFrame::Welcome {
                name: self.name.clone(),
                admin,
                queue,
                assigned,
                tickets,
                online: self.app.inner.hub.online(),
            }),
            Err(e) => self.not_stored(e),
        }
    }

    async fn on_text(&mut self, text: &str) {
        let max = self.app.config().limits.max_message_bytes;
        let frame = match agent::decode(text, max) {
            Ok(f) => f,
            Err(e) => return self.send(AgentServerFrame::error(e.code, e.message, None)),
        };
        let app = self.app.clone();
        let store = app.store().clone();
        let hub = &app.inner.hub;
        let me = self.name.clone();
        match frame {
            AgentFrame::Auth { .. } => {}
            AgentFrame::Open { conversation_id } => {
                match store.agent_conversation(conversation_id.clone()).await {
                    Ok(Some(conversation)) => {
                        self.send(AgentServerFrame::Conversation { conversation })
                    }
                    Ok(None) => self.refused(Refusal::UnknownConversation, Some(conversation_id)),
                    Err(e) => self.not_stored(e),
                }
            }
            AgentFrame::Claim { conversation_id } => {
                match store.claim(conversation_id.clone(), me.clone()).await {
                    Ok(Ok(waited_ms)) => {
                        app.metrics()
                            .queue_wait_seconds
                            .observe(waited_ms as f64 / 1000.0);
                        tracing::info!(conversation = %conversation_id, agent = %me, "claimed");
                        hub.to_visitor(&conversation_id, VisitorEvent::State("with_agent"));
                        hub.to_visitor(
                            &conversation_id,
                            VisitorEvent::frame(ServerFrame::AgentJoined { name: me.clone() }),
                        );
                        self.send_conversation_to(&me, &conversation_id).await;
                        hub.to_agents(&AgentServerFrame::Update {
                            conversation_id,
                            state: "with_agent".into(),
                            agent: Some(me),
                        });
                        hub.queue_changed();
                    }
                    Ok(Err(r)) => self.refused(r, Some(conversation_id)),
                    Err(e) => self.not_stored(e),
                }
            }
            AgentFrame::Message {
                conversation_id,
                id,
                text,
            } => {
                let text = self.app.content().intents.sensitive.scan(&text).redacted;
                match store
                    .agent_message(
                        conversation_id.clone(),
                        me.clone(),
                        id.clone(),
                        text.clone(),
                    )
                    .await
                {
                    Ok(Ok(Written::Stored { at })) => {
                        app.metrics().agent_message();
                        self.send(AgentServerFrame::Ack { id });
                        hub.to_visitor(
                            &conversation_id,
                            VisitorEvent::frame(ServerFrame::AgentMessage { text, name: me, at }),
                        );
                    }
                    Ok(Ok(Written::Duplicate)) => self.send(AgentServerFrame::Ack { id }),
                    Ok(Err(r)) => self.refused(r, Some(conversation_id)),
                    Err(e) => self.not_stored(e),
                }
            }
            AgentFrame::Typing { conversation_id } => {
                hub.to_visitor(
                    &conversation_id,
                    VisitorEvent::frame(ServerFrame::Typing {}),
                );
            }
            AgentFrame::Note {
                conversation_id,
                id,
                text,
            } => {
                let text = self.app.content().intents.sensitive.scan(&text).redacted;
                match store
                    .add_note(
                        conversation_id.clone(),
                        me.clone(),
                        id.clone(),
                        text.clone(),
                    )
                    .await
                {
                    Ok(Ok(Written::Stored { at })) => {
                        self.send(AgentServerFrame::Ack { id });
                        hub.to_agents(&AgentServerFrame::Note {
                            conversation_id,
                            name: me,
                            text,
                            at,
                        });
                    }
                    Ok(Ok(Written::Duplicate)) => self.send(AgentServerFrame::Ack { id }),
                    Ok(Err(r)) => self.refused(r, Some(conversation_id)),
                    Err(e) => self.not_stored(e),
                }
            }
            AgentFrame::Release { conversation_id } => {
                match store.release(conversation_id.clone(), me.clone()).await {
                    Ok(Ok(())) => {
                        tracing::info!(conversation = %conversation_id, agent = %me, "released");
                        hub.to_visitor(&conversation_id, VisitorEvent::State("queued"));
                        hub.to_visitor(
                            &conversation_id,
                            VisitorEvent::frame(ServerFrame::AgentLeft { name: me }),
                        );
                        hub.to_agents(&AgentServerFrame::Update {
                            conversation_id,
                            state: "queued".into(),
                            agent: None,
                        });
                        hub.queue_changed();
                    }
                    Ok(Err(r)) => self.refused(r, Some(conversation_id)),
                    Err(e) => self.not_stored(e),
                }
            }
            AgentFrame::Transfer {
                conversation_id,
                to,
            } => {
                if to == me {
                    return;
                }
                match store
                    .transfer(conversation_id.clone(), me.clone(), to.clone())
                    .await
                {
                    Ok(Ok(())) => {
                        tracing::info!(conversation = %conversation_id, from = %me, to = %to, "transferred");
                        hub.to_visitor(
                            &conversation_id,
                            VisitorEvent::frame(ServerFrame::AgentLeft { name: me }),
                        );
                        hub.to_visitor(
                            &conversation_id,
                            VisitorEvent::frame(ServerFrame::AgentJoined { name: to.clone() }),
                        );
                        self.send_conversation_to(&to, &conversation_id).await;
                        hub.to_agents(&AgentServerFrame::Update {
                            conversation_id,
                            state: "with_agent".into(),
                            agent: Some(to),
                        });
                    }
                    Ok(Err(r)) => self.refused(r, Some(conversation_id)),
                    Err(e) => self.not_stored(e),
                }
            }
            AgentFrame::Close {
                conversation_id,
                note,
            } => {
                let note = note.map(|n| self.app.content().intents.sensitive.scan(&n).redacted);
                match store
                    .close_by_agent(conversation_id.clone(), me.clone(), note)
                    .await
                {
                    Ok(Ok(outcome)) => {
                        app.metrics().closed(&outcome);
                        tracing::info!(conversation = %conversation_id, agent = %me, "closed by agent");
                        hub.to_visitor(&conversation_id, VisitorEvent::State("closed"));
                        hub.to_visitor(
                            &conversation_id,
                            VisitorEvent::frame(ServerFrame::Closed { outcome }),
                        );
                        hub.to_agents(&AgentServerFrame::Update {
                            conversation_id,
                            state: "closed".into(),
                            agent: Some(me),
                        });
                    }
                    Ok(Err(r)) => self.refused(r, Some(conversation_id)),
                    Err(e) => self.not_stored(e),
                }
            }
            AgentFrame::AnswerTicket {
                ticket_id,
                id,
                text,
            } => {
                match store
                    .answer_ticket(ticket_id.clone(), me.clone(), text.clone())
                    .await
                {
                    Ok(Ok(ticket)) => {
                        self.send(AgentServerFrame::Ack { id });
                        if let (Some(conv), Some(at)) =
                            (&ticket.conversation_id, ticket.answered_at)
                        {
                            hub.to_visitor(
                                conv,
                                VisitorEvent::frame(ServerFrame::AgentMessage {
                                    text,
                                    name: me,
                                    at,
                                }),
                            );
                        }
                        self.app.tickets_changed().await;
                    }
                    Ok(Err(r)) => self.refused(r, None),
                    Err(e) => self.not_stored(e),
                }
            }
        }
    }

    /// Sends a whole conversation to every session of `agent`.
    async fn send_conversation_to(&mut self, agent: &str, conversation_id: &str) {
        match self
            .app
            .store()
            .agent_conversation(conversation_id.to_string())
            .await
        {
            Ok(Some(conversation)) => self
                .app
                .inner
                .hub
                .to_agent(agent, &AgentServerFrame::Conversation { conversation }),
            Ok(None) => {}
            Err(e) => self.not_stored(e),
        }
    }
}
