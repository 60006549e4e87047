//! One visitor's websocket: connecting (from a chosen source address if asked,
//! always with TCP_NODELAY), starting a conversation with `hello` or resuming
//! one after a lost connection, asking a question and waiting for its
//! `reply`, or just holding the line open. Every network failure comes back
//! as a [`Failure`] for the caller to count; nothing here panics on what the
//! network does.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::acklog::AckLog;
use crate::stamp::StampedStream;
use crate::sys;
use crate::wire::{ClientFrame, ServerFrame};

/// Where visitors connect: the websocket URL and the address it resolved to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
}

/// Why a visitor could not do what it was asked. All but `ErrorFrame` leave
/// the connection unusable.
#[derive(Debug)]
pub enum Failure {
    /// The TCP connection or the websocket handshake failed.
    Connect(String),
    /// The server answered with an `error` frame (the connection stays open).
    ErrorFrame(String),
    /// The server closed the connection or the conversation, or the socket failed.
    Disconnected(String),
    /// No answer in time.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::ErrorFrame(code) => write!(f, "error frame: {code}"),
            Failure::Disconnected(why) => write!(f, "disconnected: {why}"),
            Failure::Timeout => write!(f, "timed out"),
        }
    }
}

/// What came back for a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replied {
    /// A reply on the bot path (answer, clarify or fallback).
    Bot,
    /// The conversation was handed to the queue; further messages would only be acked.
    Escalated,
    /// A message sent again after a reconnect that the server had already
    /// stored (its id is in the resumed history): acknowledged again, and
    /// answered before, so no new reply comes.
    Stored,
}

/// What resumes a conversation: its id and the secret the `welcome` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub resume_token: String,
}

/// A connected visitor with a conversation started.
pub struct Visitor {
    ws: WebSocketStream<StampedStream>,
    conversation: Conversation,
    /// The conversation's state in the `welcome`.
    state: String,
    /// The visitor's message ids the conversation held when it was resumed.
    stored: HashSet<String>,
    /// Where acks are recorded, if anywhere.
    acks: Option<Arc<AckLog>>,
    /// Whether the message last asked was acknowledged.
    acked: bool,
}

/// Small buffers, as the server uses: frames are short, and ten thousand idle
/// visitors should not cost the generator a gigabyte.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
}

impl Visitor {
    /// Connects, says hello and waits for `welcome`, all before `deadline`.
    /// With `resume`, the hello names that conversation; the server resumes
    /// it, or starts a new one if it cannot (see [`Visitor::conversation`]).
    pub async fn start(
        target: &Target,
        source: Option<IpAddr>,
        deadline: Instant,
        resume: Option<&Conversation>,
    ) -> Result<Visitor, Failure> {
        let ws = timeout_at(deadline, connect(target, source))
            .await
            .map_err(|_| Failure::Connect("timed out".into()))??;
        let mut visitor = Visitor {
            ws,
            conversation: Conversation {
                id: String::new(),
                resume_token: String::new(),
            },
            state: String::new(),
            stored: HashSet::new(),
            acks: None,
            acked: false,
        };
        visitor
            .send(&ClientFrame::Hello {
                v: 1,
                conversation_id: resume.map(|c| c.id.as_str()),
                resume_token: resume.map(|c| c.resume_token.as_str()),
            })
            .await?;
        timeout_at(deadline, visitor.wait_for_welcome())
            .await
            .map_err(|_| Failure::Timeout)??;
        Ok(visitor)
    }

    /// The conversation the server attached this connection to.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Whether the conversation was with the queue or a person when it was
    /// resumed: it escalated, but the reply saying so was lost with the
    /// connection. Messages to it are stored and acknowledged, never answered.
    pub fn handed_off(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "with_agent")
    }

    /// Records every ack this visitor receives in `log`.
    pub fn log_acks(&mut self, log: Option<Arc<AckLog>>) {
        self.acks = log;
    }

    /// Whether the message last asked was acknowledged (it is stored even if
    /// its reply never came).
    pub fn acked(&self) -> bool {
        self.acked
    }

    /// When the kernel received the segment that brought the last frame
    /// read (after [`Visitor::ask`]: its reply), if it stamps segments.
    pub fn received(&self) -> Option<std::time::SystemTime> {
        self.ws.get_ref().received()
    }

    /// Sends a message and waits for its reply, skipping the `ack` and any
    /// `queue` or other frames in between. A message the resumed conversation
    /// already holds is only acknowledged ([`Replied::Stored`]).
    pub async fn ask(
        &mut self,
        id: &str,
        text: &str,
        deadline: Instant,
    ) -> Result<Replied, Failure> {
        self.acked = false;
        let reply_expected = !self.stored.contains(id);
        self.send(&ClientFrame::Message { id, text }).await?;
        timeout_at(deadline, self.wait_for_reply(id, reply_expected))
            .await
            .map_err(|_| Failure::Timeout)?
    }

    /// Holds the connection open until `deadline`, reading (and so answering
    /// pings) as frames come. False if the server closed it first.
    pub async fn hold(mut self, deadline: Instant) -> bool {
        loop {
            match timeout_at(deadline, self.ws.next()).await {
                Err(_) => {
                    let _ =
                        timeout_at(Instant::now() + Duration::from_secs(1), self.ws.close(None))
                            .await;
                    return true;
                }
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return false,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    async fn send(&mut self, frame: &ClientFrame<'_>) -> Result<(), Failure> {
        self.ws
            .send(Message::Text(frame.to_json().into()))
            .await
            .map_err(|e| Failure::Disconnected(e.to_string()))
    }

    /// The next decodable server frame.
    async fn next_frame(&mut self) -> Result<ServerFrame, Failure> {
        loop {
            let text = match self.ws.next().await {
                None => return Err(Failure::Disconnected("connection closed".into())),
                Some(Err(e)) => return Err(Failure::Disconnected(e.to_string())),
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!("closed by server: {} {}", u16::from(f.code), f.reason))
                        .unwrap_or_else(|| "closed by server".into());
                    return Err(Failure::Disconnected(why));
                }
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
            };
            if let Some(frame) = ServerFrame::decode(text.as_str()) {
                return Ok(frame);
            }
        }
    }

    async fn wait_for_welcome(&mut self) -> Result<(), Failure> {
        loop {
            match self.next_frame().await? {
                ServerFrame::Welcome {
                    conversation_id,
                    resume_token,
                    state,
                    history,
                } => {
                    self.conversation = Conversation {
                        id: conversation_id,
                        resume_token,
                    };
                    self.state = state;
                    self.stored = history
                        .into_iter()
                        .filter(|h| h.role == "visitor")
                        .filter_map(|h| h.id)
                        .collect();
                    return Ok(());
                }
                ServerFrame::Error { code } => return Err(Failure::ErrorFrame(code)),
                _ => {}
            }
        }
    }

    async fn wait_for_reply(&mut self, id: &str, reply_expected: bool) -> Result<Replied, Failure> {
        loop {
            match self.next_frame().await? {
                ServerFrame::Ack { id: acked } if acked == id => {
                    self.acked = true;
                    if let Some(log) = &self.acks {
                        if let Err(e) = log.record(&self.conversation.id, id) {
                            eprintln!("frontdesk-load: warning: ack not logged: {e}");
                        }
                    }
                    if !reply_expected {
                        return Ok(Replied::Stored);
                    }
                }
                ServerFrame::Reply { kind } if kind == "escalate" => return Ok(Replied::Escalated),
                ServerFrame::Reply { .. } => return Ok(Replied::Bot),
                ServerFrame::Error { code } => return Err(Failure::ErrorFrame(code)),
                ServerFrame::Closed {} => {
                    return Err(Failure::Disconnected("conversation closed".into()))
                }
                ServerFrame::Ack { .. } | ServerFrame::Welcome { .. } | ServerFrame::Other => {}
            }
        }
    }
}

async fn connect(
    target: &Target,
    source: Option<IpAddr>,
) -> Result<WebSocketStream<StampedStream>, Failure> {
    let failed = |e: std::io::Error| Failure::Connect(e.to_string());
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(failed)?;
    if let Some(ip) = source {
        sys::bind_address_no_port(&socket);
        socket.bind(SocketAddr::new(ip, 0)).map_err(failed)?;
    }
    let stream = socket.connect(target.addr).await.map_err(failed)?;
    stream.set_nodelay(true).map_err(failed)?;
    let stream = StampedStream::new(stream);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(ws_config()))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
    Ok(ws)
}
