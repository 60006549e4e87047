//! One visitor's websocket session: the only code that touches raw visitor
//! frames. Reads frames, asks the engine, stores each turn, and acknowledges
//! a message only after the store has committed it. A bad frame gets an
//! `error` frame; the connection and the conversation carry on.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;
use tokio::sync::mpsc;

use super::App;
use crate::analytics::Rejection;
use crate::engine::{self, Context, Decided, Kind};
use crate::handoff::{hash_token, random_token, same_secret, VisitorEvent};
use crate::protocol::agent::AgentServerFrame;
use crate::protocol::{self, codes, ClientFrame, FrameError, ServerFrame};
use crate::store::{time_ordered_id, BotReply, Turn, TurnOutcome};

/// Close code asking the client to reconnect later (RFC 6455: service restart).
const CLOSE_RESTART: u16 = 1012;
/// Close code for a client that went quiet or cannot keep up (policy violation is
/// too strong; "going away" tells a well-behaved client to reconnect).
const CLOSE_GOING_AWAY: u16 = 1001;

static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `GET /ws`: upgrades within the connection limit, with bounded buffers.
pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    headers: axum::http::HeaderMap,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<super::guard::Peer>,
    State(app): State<App>,
) -> Response {
    let ws = configure(ws, &app.config().limits);
    let arrivals = peer.clone();
    app.accept(ws, &headers, peer, |socket, app| {
        let id = NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run(socket, app, id, arrivals)
    })
}

/// The visitor websocket's settings: bounded buffers and frame sizes.
fn configure(ws: WebSocketUpgrade, limits: &crate::config::Limits) -> WebSocketUpgrade {
    ws.read_buffer_size(limits.ws_read_buffer_bytes)
        .write_buffer_size(limits.ws_write_buffer_bytes)
        .max_write_buffer_size(limits.ws_write_buffer_bytes + 8 * limits.max_frame_bytes)
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
}

/// `GET /ws-echo` (only with `websocket_echo = true`): the visitor
/// websocket's exact settings and admission, echoing every message, so
/// protocol conformance suites can judge the websocket layer itself.
pub(super) async fn echo(
    ws: WebSocketUpgrade,
    headers: axum::http::HeaderMap,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<super::guard::Peer>,
    State(app): State<App>,
) -> Response {
    let ws = configure(ws, &app.config().limits);
    app.accept(ws, &headers, peer, |mut socket, app| async move {
        let mut shutdown = app.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                next = socket.recv() => match next {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        if socket.send(m).await.is_err() {
                            break;
                        }
                    }
                    // After a close frame, reading on lets the reply go out
                    // and ends with `None`: a clean closing handshake.
                    Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    })
}

/// The conversation a session is attached to.
struct Conversation {
    id: String,
    state: String,
    ctx: Context,
    /// Messages the visitor has written in it (toward `max_conversation_messages`).
    messages: usize,
    /// When this session last wrote the conversation's row (its context and
    /// `updated_at`). A turn that changes neither context nor state leaves the
    /// row alone unless it is older than [`TOUCH_EVERY`].
    touched: std::time::Instant,
}

/// How stale a conversation's `updated_at` may grow while turns change nothing
/// else in its row. Idle closing reads the messages' own times, so this only
/// bounds how far `updated_at` lags behind for retention.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl Conversation {
    /// The context to write with a turn that leaves `next` as the engine's
    /// context: `None` when the row needs no update.
    fn context_to_store(&self, next: &Context) -> Option<String> {
        (*next != self.ctx || self.touched.elapsed() >= TOUCH_EVERY)
            .then(|| serde_json::to_string(next).expect("context serializes"))
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        RateLimit {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: tokio::time::Instant::now(),
        }
    }

    /// Takes a token if there is one; a rate of 0 means no limit.
    fn allow(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = tokio::time::Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Session {
    app: App,
    /// The span of the session's log events.
    span: tracing::Span,
    conn: u64,
    /// Frames to send once the current frame or event is handled; at most
    /// `limits.outbound_queue` while the client is not reading.
    out: Vec<Message>,
    /// Given to the hub once the session has a conversation, so agents can reach it.
    events: mpsc::Sender<VisitorEvent>,
    conversation: Option<Conversation>,
    /// Why the visitor was last offered to leave a message, if they were.
    offline: Option<&'static str>,
    /// The client stopped reading; the session ends.
    too_slow: bool,
    /// When the frame being handled reached the server's socket (the
    /// kernel's receive stamp; when it was read, where there is none).
    arrived: std::time::Instant,
    /// A bot reply is queued: when the frame it answers arrived. The reply's
    /// latency is observed once it is written.
    replying: Option<std::time::Instant>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(c) = &self.conversation {
            self.app.inner.hub.leave_visitor(&c.id, self.conn);
        }
    }
}

/// One visitor connection, in one task: it reads a frame (or takes an event
/// from the agents' side), handles it, and writes what that queued before
/// reading on. The frames a handled message produces (its ack and reply) go
/// out in one write. `arrivals` tells when each frame reached the socket,
/// which is when its reply's latency starts.
async fn run(mut socket: WebSocket, app: App, conn: u64, arrivals: super::guard::Peer) {
    let idle = Duration::from_secs(app.config().limits.idle_timeout_secs);
    let mut limit = RateLimit::new(
        app.config().limits.frames_per_second,
        app.config().limits.frame_burst,
    );
    let mut shutdown = app.inner.shutdown.clone();
    let (events, mut events_rx) = mpsc::channel::<VisitorEvent>(64);
    // The session's events name it as their parent instead of the task
    // entering the span on every poll (`Instrument`), which costs the
    // subscriber's bookkeeping twice a wake-up: 2% of the core under load
    // (docs/benchmarks.md, twenty-first round).
    let span = tracing::info_span!("visitor", conn);
    let mut session = Session {
        app,
        span: span.clone(),
        conn,
        out: Vec::new(),
        events,
        conversation: None,
        offline: None,
        too_slow: false,
        arrived: std::time::Instant::now(),
        replying: None,
    };
    session.app.metrics().connection(false, 1);
    tracing::debug!(parent: &span, "connected");
    // One timer for the whole session: a frame only notes when it came, and
    // the timer, when it fires, checks whether the client has been quiet for
    // the whole of `idle` or moves on to the new deadline.
    let mut heard = tokio::time::Instant::now();
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    loop {
        if *shutdown.borrow_and_update() {
            session.close(CLOSE_RESTART, "server restarting; reconnect");
        } else {
            tokio::select! {
                _ = shutdown.changed() => continue,
                Some(event) = events_rx.recv() => session.on_event(event),
                () = &mut quiet => {
                    let due = heard + idle;
                    if due > tokio::time::Instant::now() {
                        quiet.as_mut().reset(due);
                        continue;
                    }
                    session.close(CLOSE_GOING_AWAY, "idle");
                }
                next = socket.recv() => {
                    heard = tokio::time::Instant::now();
                    session.arrived = arrivals.received(heard.into_std());
                    match next {
                        None | Some(Ok(Message::Close(_))) => break,
                        Some(Err(e)) => {
                            tracing::debug!(parent: &span, error = %e, "websocket error");
                            break;
                        }
                        Some(Ok(Message::Text(_) | Message::Binary(_))) if !limit.allow() => {
                            session.app.metrics().rejected(Rejection::RateLimited);
                            session.send(FrameError::new(codes::RATE_LIMITED, "too many frames; slow down and send it again").frame());
                        }
                        // Handling a frame runs on the heap: its state (the engine's
                        // decision, the store's reply) would otherwise sit in every
                        // idle connection's task, which is sized for its largest state.
                        Some(Ok(Message::Text(text))) => Box::pin(session.on_text(text.as_str())).await,
                        Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                            Ok(text) => Box::pin(session.on_text(text)).await,
                            Err(_) => session.send(FrameError::new(codes::BINARY_FRAME, "frames are UTF-8 JSON text").frame()),
                        },
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
        if !session.write_out(&mut socket, &mut events_rx).await {
            break;
        }
    }
    if session.too_slow {
        session.app.metrics().rejected(Rejection::TooSlow);
        tracing::info!(parent: &span, "client not reading; closing");
    }
    session.app.metrics().connection(false, -1);
    drop(session);
    // Completes the closing handshake when the client closed, or sends what a
    // close left unsent; a client that does not read is not waited for long.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close()).await;
    tracing::debug!(parent: &span, "disconnected");
}

/// How long an ending session waits to send its last frames.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

impl Session {
    fn send(&mut self, frame: ServerFrame) {
        self.send_json(frame.to_json());
    }

    /// Queues a frame already serialized.
    fn send_json(&mut self, json: String) {
        if self.too_slow {
            return;
        }
        if self.out.len() >= self.app.config().limits.outbound_queue {
            self.too_slow = true;
            return;
        }
        self.out.push(Message::Text(json.into()));
    }

    fn close(&mut self, code: u16, reason: &'static str) {
        self.out.push(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })));
    }

    /// Writes the frames queued by handling a frame or an event, then
    /// flushes them. While a client does not read, events from the agents'
    /// side keep queueing; a client that reads nothing for
    /// `limits.write_timeout_secs`, or lets `limits.outbound_queue` frames
    /// pile up, is too slow. Returns whether
    /// the session goes on: not after a close frame, a failed write or a
    /// client too slow.
    async fn write_out(
        &mut self,
        socket: &mut WebSocket,
        events: &mut mpsc::Receiver<VisitorEvent>,
    ) -> bool {
        // Not started unless a write stalls: a sleep is only registered with
        // the timer when first polled.
        let stalled = tokio::time::sleep(Duration::from_secs(
            self.app.config().limits.write_timeout_secs,
        ));
        tokio::pin!(stalled);
        while !self.out.is_empty() {
            let mut frames = std::mem::take(&mut self.out);
            let closing = frames.iter().any(|m| matches!(m, Message::Close(_)));
            let written = {
                let write = async {
                    for frame in frames.drain(..) {
                        socket.feed(frame).await?;
                    }
                    socket.flush().await
                };
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        biased;
                        done = &mut write => break done.is_ok(),
                        Some(event) = events.recv() => {
                            self.on_event(event);
                            if self.too_slow {
                                break false;
                            }
                        }
                        () = &mut stalled => {
                            self.too_slow = true;
                            break false;
                        }
                    }
                }
            };
            if !written || closing {
                return false;
            }
            if let Some(arrived) = self.replying.take() {
                self.app
                    .metrics()
                    .reply_written(arrived.elapsed().as_secs_f64());
            }
            // The emptied buffer is kept for the next frames.
            if self.out.is_empty() {
                self.out = frames;
            }
        }
        true
    }

    /// Something from an agent's side.
    fn on_event(&mut self, event: VisitorEvent) {
        match event {
            VisitorEvent::Frame(frame) => self.send(*frame),
            VisitorEvent::State(state) => {
                if let Some(c) = &mut self.conversation {
                    c.state = state.into();
                }
            }
        }
    }

    /// Attaches the session to its conversation in the hub.
    fn attach(&mut self, conversation: Conversation) {
        self.app
            .inner
            .hub
            .join_visitor(&conversation.id, self.conn, self.events.clone());
        self.conversation = Some(conversation);
    }

    fn error(&mut self, code: &'static str, message: impl Into<String>) {
        self.send(FrameError::new(code, message).frame());
    }

    async fn on_text(&mut self, text: &str) {
        let max = self.app.config().limits.max_message_bytes;
        let frame = match protocol::decode(text, max) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(parent: &self.span, code = e.code, "bad frame");
                self.send(e.frame());
                return;
            }
        };
        if let ClientFrame::Hello {
            conversation_id,
            resume_token,
            ..
        } = frame
        {
            if self.conversation.is_some() {
                self.error(
                    codes::ALREADY_STARTED,
                    "this connection already has a conversation",
                );
            } else {
                self.hello(conversation_id, resume_token).await;
            }
            return;
        }
        let Some(conv) = &self.conversation else {
            self.error(codes::NOT_STARTED, "send hello first");
            return;
        };
        let closed = conv.state == "closed";
        match frame {
            ClientFrame::Hello { .. } => unreachable!("handled above"),
            ClientFrame::Message { .. }
            | ClientFrame::Choice { .. }
            | ClientFrame::RequestHuman {}
                if closed =>
            {
                self.error(
                    codes::CONVERSATION_CLOSED,
                    "this conversation is closed; start a new one with hello",
                );
            }
            ClientFrame::Message { .. } | ClientFrame::Choice { .. }
                if conv.messages >= self.app.config().limits.max_conversation_messages =>
            {
                self.error(
                    codes::CONVERSATION_TOO_LONG,
                    "this conversation has reached its length limit; close it and start a new one",
                );
            }
            ClientFrame::Message { id, text } => self.message(id, text).await,
            ClientFrame::Choice { id, value } => self.choice(id, value).await,
            ClientFrame::Feedback { answer_id, helpful } => self.feedback(answer_id, helpful).await,
            ClientFrame::RequestHuman {} => self.request_human().await,
            ClientFrame::Typing {} => {
                if conv.state == "queued" || conv.state == "with_agent" {
                    let conversation_id = conv.id.clone();
                    self.app
                        .inner
                        .hub
                        .to_agents(&AgentServerFrame::Typing { conversation_id });
                }
            }
            ClientFrame::LeaveMessage { id, email, text } => {
                self.leave_message(id, email, text).await
            }
            ClientFrame::Rating { score } => {
                let id = conv.id.clone();
                if let Err(e) = self.app.store().store_rating(id, score).await {
                    tracing::warn!(parent: &self.span, error = %e, "rating not stored");
                    self.error(codes::STORE_UNAVAILABLE, "rating not stored; try again");
                }
            }
            ClientFrame::Close {} => self.close_conversation().await,
        }
    }

    async fn hello(&mut self, conversation_id: Option<String>, resume_token: Option<String>) {
        let store = self.app.store().clone();
        if let (Some(id), Some(token)) = (conversation_id, resume_token) {
            let mut loaded = store.load_conversation(id.clone()).await;
            if let Ok(Some(c)) = &loaded {
                // A conversation that closed for idleness reopens when its
                // visitor comes back within the window.
                if c.state == "closed" && same_secret(&hash_token(&token), &c.resume_hash) {
                    let hours = self.app.config().conversations.reopen_window_hours as i64;
                    let since = crate::store::now_ms() - hours * 3_600_000;
                    if let Ok(true) = store.reopen(id.clone(), since).await {
                        tracing::debug!(parent: &self.span, conversation = %id, "reopened");
                        loaded = store.load_conversation(id).await;
                    }
                }
            }
            match loaded {
                Ok(Some(c))
                    if c.state != "closed" && same_secret(&hash_token(&token), &c.resume_hash) =>
                {
                    tracing::debug!(parent: &self.span, conversation = %c.id, "resumed");
                    let state = c.state.clone();
                    self.attach(Conversation {
                        id: c.id.clone(),
                        state: c.state.clone(),
                        ctx: serde_json::from_str(&c.context).unwrap_or_default(),
                        messages: c.history.iter().filter(|h| h.role == "visitor").count(),
                        touched: std::time::Instant::now(),
                    });
                    self.send(ServerFrame::Welcome {
                        conversation_id: c.id,
                        resume_token: token,
                        state: state.clone(),
                        history: recent(c.history),
                    });
                    if state == "queued" {
                        self.send_queue_position().await;
                    }
                    return;
                }
                Ok(_) => {
                    tracing::debug!(parent: &self.span, "resume refused; starting a new conversation")
                }
                Err(e) => {
                    tracing::warn!(parent: &self.span, error = %e, "resume failed");
                    self.error(
                        codes::STORE_UNAVAILABLE,
                        "conversation could not be loaded; try again",
                    );
                    return;
                }
            }
        }
        let id = time_ordered_id("c_");
        let token = random_token(16);
        match store
            .create_conversation(id.clone(), hash_token(&token))
            .await
        {
            Ok(()) => {
                tracing::debug!(parent: &self.span, conversation = %id, "new conversation");
                self.attach(Conversation {
                    id: id.clone(),
                    state: "bot".into(),
                    ctx: Context::default(),
                    messages: 0,
                    touched: std::time::Instant::now(),
                });
                self.send(ServerFrame::Welcome {
                    conversation_id: id,
                    resume_token: token,
                    state: "bot".into(),
                    history: Vec::new(),
                });
            }
            Err(e) => {
                tracing::warn!(parent: &self.span, error = %e, "conversation not created");
                self.error(
                    codes::STORE_UNAVAILABLE,
                    "conversation could not be started; try again",
                );
            }
        }
    }

    async fn message(&mut self, id: String, text: String) {
        let conv = self.conversation.as_ref().expect("checked by caller");
        if conv.state != "bot" {
            // With the queue or an agent: keep the message for the person who picks it up.
            let redacted = self.app.content().intents.sensitive.scan(&text).redacted;
            let turn = Turn {
                conversation_id: conv.id.clone(),
                visitor: Some((id.clone(), redacted.clone())),
                reply: None,
                state: None,
                context: conv.context_to_store(&conv.ctx),
            };
            let queued = conv.state == "queued";
            let conversation_id = conv.id.clone();
            let touches = turn.context.is_some();
            match self.app.store().store_turn(turn).await {
                Ok(TurnOutcome::Stored) => {
                    self.app.metrics().visitor_message();
                    if let Some(c) = &mut self.conversation {
                        c.messages += 1;
                        if touches {
                            c.touched = std::time::Instant::now();
                        }
                    }
                    self.send(ServerFrame::Ack { id: id.clone() });
                    let hub = &self.app.inner.hub;
                    hub.to_agents(&AgentServerFrame::VisitorMessage {
                        conversation_id,
                        id,
                        text: redacted,
                        at: crate::store::now_ms(),
                    });
                    if queued {
                        hub.queue_changed();
                    }
                }
                Ok(TurnOutcome::Duplicate) => self.send(ServerFrame::Ack { id }),
                Err(e) => self.not_stored(e),
            }
            return;
        }
        let content = self.app.content();
        let started = std::time::Instant::now();
        let (decided, remembered) =
            engine::decide_remembered(&content, &conv.ctx, &text, &self.app.config().engine);
        self.app.metrics().decision_remembered(remembered);
        tracing::trace!(parent: &self.span, text = %decided.decision.redacted, "visitor message");
        let redacted = decided.decision.redacted.clone();
        self.apply(Some((id, redacted)), decided, started).await;
    }

    async fn choice(&mut self, id: String, value: String) {
        if value == "request_human" {
            // Store the click as the visitor's message, then escalate.
            let conv = self.conversation.as_ref().expect("checked by caller");
            let started = std::time::Instant::now();
            let decision = engine::request_human(&conv.ctx, &self.app.config().engine);
            self.apply(
                Some((id, "Talk to a person".into())),
                decision.into(),
                started,
            )
            .await;
            return;
        }
        let content = self.app.content();
        let conv = self.conversation.as_ref().expect("checked by caller");
        if conv.state != "bot" {
            return self.message(id, value).await;
        }
        let started = std::time::Instant::now();
        let decision = engine::choose(&content, &conv.ctx, &value, &self.app.config().engine);
        // Store what the visitor saw on the button, not the internal value.
        let label = value
            .strip_prefix(engine::CHOICE_ARTICLE)
            .and_then(|a| content.kb.get(a))
            .map(|i| content.kb.articles[i].title.clone())
            .unwrap_or_else(|| decision.redacted.clone());
        self.apply(Some((id, label)), decision.into(), started)
            .await;
    }

    async fn feedback(&mut self, answer_id: String, helpful: bool) {
        let conv = self.conversation.as_ref().expect("checked by caller");
        match self
            .app
            .store()
            .store_feedback(conv.id.clone(), answer_id, helpful)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return self.error(codes::UNKNOWN_ANSWER, "no such answer in this conversation")
            }
            Err(e) => return self.not_stored(e),
        }
        let conv = self.conversation.as_ref().expect("checked by caller");
        if !helpful && conv.state == "bot" {
            let started = std::time::Instant::now();
            let decision = engine::negative_feedback(&conv.ctx, &self.app.config().engine);
            self.apply(None, decision.into(), started).await;
        }
    }

    async fn request_human(&mut self) {
        let conv = self.conversation.as_ref().expect("checked by caller");
        if conv.state != "bot" {
            return self.send_queue_position().await;
        }
        let started = std::time::Instant::now();
        let decision = engine::request_human(&conv.ctx, &self.app.config().engine);
        self.apply(None, decision.into(), started).await;
    }

    async fn close_conversation(&mut self) {
        let conv = self.conversation.as_mut().expect("checked by caller");
        if conv.state == "closed" {
            return;
        }
        let was = std::mem::take(&mut conv.state);
        let id = conv.id.clone();
        match self.app.store().close_conversation(id.clone()).await {
            Ok(outcome) => {
                self.app.metrics().closed(&outcome);
                let conv = self.conversation.as_mut().expect("checked by caller");
                conv.state = "closed".into();
                self.send(ServerFrame::Closed { outcome });
                if was == "queued" || was == "with_agent" {
                    let hub = &self.app.inner.hub;
                    hub.to_agents(&AgentServerFrame::Update {
                        conversation_id: id,
                        state: "closed".into(),
                        agent: None,
                    });
                    hub.queue_changed();
                }
            }
            Err(e) => {
                if let Some(conv) = &mut self.conversation {
                    conv.state = was;
                }
                self.not_stored(e)
            }
        }
    }

    /// An offline message for the team: stored as a ticket that agents answer later.
    async fn leave_message(&mut self, id: String, email: String, text: String) {
        let conv = self.conversation.as_ref().expect("checked by caller");
        let text = self.app.content().intents.sensitive.scan(&text).redacted;
        let reason = self.offline.unwrap_or("visitor");
        match self
            .app
            .store()
            .create_ticket(
                Some(conv.id.clone()),
                id.clone(),
                email.trim().to_string(),
                text,
                reason.into(),
            )
            .await
        {
            Ok(ticket) => {
                tracing::info!(parent: &self.span, ticket = %ticket.ticket_id, "offline message stored");
                // The agents hear of it before the visitor does, so an
                // agent who signs in after the visitor saw the ticket finds
                // it in the console's first list and gets no older one.
                self.app.tickets_changed().await;
                self.send(ServerFrame::Ack { id });
                self.send(ServerFrame::Ticket {
                    ticket_id: ticket.ticket_id,
                });
            }
            Err(e) => self.not_stored(e),
        }
    }

    async fn send_queue_position(&mut self) {
        let conv = self.conversation.as_ref().expect("checked by caller");
        let id = conv.id.clone();
        if let Ok(Some(position)) = self.app.store().queue_position(id).await {
            self.send(ServerFrame::Queue {
                position,
                eta_seconds: None,
            });
        }
    }

    /// Stores the turn a decision made (`started` when the decision began) and,
    /// once it is durable, acknowledges and replies.
    async fn apply(
        &mut self,
        visitor: Option<(String, String)>,
        decided: Decided,
        started: std::time::Instant,
    ) {
        let took = started.elapsed().as_secs_f64();
        let Decided {
            decision: d,
            explanation_packed,
            source_json,
            quick_replies_json,
            reply_members,
        } = decided;
        let escalates = d.kind == Kind::Escalate;
        // An escalation reaches the queue only when people are in and it has room;
        // otherwise the visitor is offered to leave a message.
        let mut offline: Option<(&'static str, String)> = None;
        if escalates {
            let handoff = &self.app.config().handoff;
            if !self.app.inner.hours.open_now() {
                offline = Some(("outside_hours", handoff.closed_message.clone()));
            } else if self.queue_full().await {
                offline = Some(("queue_full", handoff.busy_message.clone()));
            } else if !self.app.inner.hub.any_agent_online() {
                offline = Some(("no_agents", handoff.no_agents_message.clone()));
            }
        }
        // Offered a message instead, the visitor gets no quick replies, and
        // the reply is serialized here rather than from the decision's.
        let as_decided = offline.is_none();
        // Outside hours or with the queue full, the offline message is the
        // reply too; then nobody is queued.
        let (text, queues) = match &offline {
            Some(("outside_hours" | "queue_full", message)) => (message.as_str(), false),
            _ => (d.text.as_str(), escalates),
        };
        let conv = self.conversation.as_ref().expect("checked by caller");
        let answer_id = time_ordered_id("a_");
        let visitor_id = visitor.as_ref().map(|(id, _)| id.clone());
        let turn = Turn {
            conversation_id: conv.id.clone(),
            visitor,
            reply: Some(BotReply {
                answer_id: answer_id.clone(),
                kind: d.kind,
                text: text.to_string(),
                source: d.source.clone(),
                source_json,
                quick_replies_json: if as_decided {
                    quick_replies_json
                } else {
                    "[]".into()
                },
                score: d.score,
                escalation: d.escalation,
                explanation: explanation_packed,
                smalltalk: d.kind == Kind::Answer
                    && d.source.as_ref().is_some_and(|s| {
                        s.kind == crate::engine::SourceKind::Intent
                            && self
                                .app
                                .content()
                                .intents
                                .get(&s.id)
                                .is_some_and(|i| i.smalltalk)
                    }),
            }),
            state: queues.then_some("queued"),
            context: conv.context_to_store(&d.next),
        };
        let touches = turn.context.is_some();
        match self.app.store().store_turn(turn).await {
            Ok(TurnOutcome::Stored) => {
                let metrics = self.app.metrics();
                metrics.decision(d.kind, d.escalation, took);
                if let Some(id) = visitor_id {
                    metrics.visitor_message();
                    if let Some(c) = &mut self.conversation {
                        c.messages += 1;
                    }
                    self.send(ServerFrame::Ack { id });
                }
                tracing::debug!(parent: &self.span, kind = d.kind.as_str(), rule = %d.explanation.rule, "reply");
                self.replying = Some(self.arrived);
                if as_decided {
                    self.send_json(crate::protocol::reply_frame(&answer_id, &reply_members));
                } else {
                    self.send(ServerFrame::Reply {
                        answer_id,
                        kind: d.kind,
                        text: text.to_string(),
                        source: d.source.clone(),
                        quick_replies: Vec::new(),
                    });
                }
                let span = &self.span;
                let conv = self.conversation.as_mut().expect("checked by caller");
                conv.ctx = d.next.clone();
                if touches {
                    conv.touched = std::time::Instant::now();
                }
                if queues {
                    conv.state = "queued".into();
                    tracing::info!(parent: span, conversation = %conv.id, reason = d.escalation.map(|r| r.as_str()), "escalated");
                    // The queue broadcast tells this visitor its position.
                    self.app.inner.hub.queue_changed();
                } else if escalates {
                    tracing::info!(parent: span, conversation = %conv.id, reason = d.escalation.map(|r| r.as_str()), "escalation offered an offline message");
                }
                if let Some((reason, message)) = offline {
                    self.offline = Some(reason);
                    self.send(ServerFrame::Offline { reason, message });
                }
            }
            Ok(TurnOutcome::Duplicate) => {
                if let Some(id) = visitor_id {
                    self.send(ServerFrame::Ack { id });
                }
            }
            Err(e) => self.not_stored(e),
        }
    }

    /// Whether the queue has reached `handoff.max_queue`.
    async fn queue_full(&self) -> bool {
        let max = self.app.config().handoff.max_queue as i64;
        let waiting = self
            .app
            .store()
            .run(|c| {
                Ok(
                    c.prepare_cached("SELECT COUNT(*) FROM conversations WHERE state = 'queued'")?
                        .query_row([], |r| r.get::<_, i64>(0))?,
                )
            })
            .await;
        matches!(waiting, Ok(n) if n >= max)
    }

    fn not_stored(&mut self, e: crate::store::StoreError) {
        tracing::warn!(parent: &self.span, error = %e, "not stored");
        self.error(codes::STORE_UNAVAILABLE, "not stored; please send it again");
    }
}

/// History entries sent on `welcome` at most: a long conversation resumes
/// with its latest part, so the frame stays far below the write buffer.
const HISTORY_SENT: usize = 300;

fn recent(mut history: Vec<crate::protocol::HistoryEntry>) -> Vec<crate::protocol::HistoryEntry> {
    if history.len() > HISTORY_SENT {
        history.drain(..history.len() - HISTORY_SENT);
    }
    history
}

/// Browsers name the page that opens a websocket in `Origin`: only this
/// server's own pages and the configured origins may. Clients that are not
/// browsers send no Origin and are allowed.
pub(super) fn origin_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}
