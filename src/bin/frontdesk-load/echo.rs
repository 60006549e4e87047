//! The baseline: a bare tokio-tungstenite server speaking just enough of the
//! visitor wire for the same visitors to drive it. `hello` gets a `welcome`;
//! each `message` gets an `ack` and a `reply` about the size of frontdesk's,
//! written together in one flush. It decodes and encodes JSON like frontdesk
//! but decides nothing and stores nothing, so what frontdesk costs beyond it
//! is the product: the engine, the store and the session around them.
//!
//! It runs in-process (on its own runtime, optionally pinned to CPUs) or as
//! `frontdesk-load echo-server --listen ADDR`, which can be pinned with taskset.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// An answer of typical length for the demo shop (frontdesk's are up to 360
/// characters of article excerpt plus a source).
const ANSWER: &str = "Standard delivery takes 2-4 working days in the Netherlands, Belgium, \
Germany and Luxembourg, and 3-6 working days elsewhere in the EU. Orders placed before \
14:00 on a working day leave our warehouse the same day; you get a tracking link by email \
as soon as the courier has your parcel.";

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    id: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Outgoing<'a> {
    Welcome {
        conversation_id: String,
        resume_token: &'a str,
        state: &'a str,
        history: [(); 0],
    },
    Ack {
        id: &'a str,
    },
    Reply {
        answer_id: String,
        kind: &'a str,
        text: &'a str,
        source: Source<'a>,
        quick_replies: [(); 0],
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
}

#[derive(Serialize)]
struct Source<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    id: &'a str,
    title: &'a str,
    url: &'a str,
}

impl Outgoing<'_> {
    fn message(&self) -> Message {
        Message::Text(
            serde_json::to_string(self)
                .expect("echo frames are plain strings")
                .into(),
        )
    }
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let mut conversations: u64 = 0;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                conversations += 1;
                tokio::spawn(session(stream, conversations));
            }
            Err(e) => {
                eprintln!("echo server: accept failed: {e}");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// Binds a loopback listener and serves on it until Ctrl-C or SIGTERM.
pub async fn serve_until_signal(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "echo server on ws://{addr}/ws ({} worker threads); Ctrl-C to stop",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    tokio::select! {
        _ = serve(listener) => {}
        _ = frontdesk::server::shutdown_signal() => {}
    }
    Ok(())
}

async fn session(stream: TcpStream, conversation: u64) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let mut answers: u64 = 0;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        let sent = match serde_json::from_str::<Incoming>(text.as_str()) {
            Ok(frame) if frame.ty == "hello" => {
                let welcome = Outgoing::Welcome {
                    conversation_id: format!("c_{conversation:032x}"),
                    resume_token: "00000000000000000000000000000000",
                    state: "bot",
                    history: [],
                };
                ws.send(welcome.message()).await
            }
            Ok(frame) if frame.ty == "message" => {
                answers += 1;
                let reply = Outgoing::Reply {
                    answer_id: format!("a_{conversation:016x}{answers:016x}"),
                    kind: "answer",
                    text: ANSWER,
                    source: Source {
                        ty: "article",
                        id: "shipping/times.md",
                        title: "How long does delivery take?",
                        url: "https://shop.example/help/shipping/times",
                    },
                    quick_replies: [],
                };
                let ack = Outgoing::Ack { id: &frame.id };
                match ws.feed(ack.message()).await {
                    Ok(()) => ws.send(reply.message()).await,
                    Err(e) => Err(e),
                }
            }
            _ => {
                let error = Outgoing::Error {
                    code: "unknown_type",
                    message: "the echo server knows hello and message",
                };
                ws.send(error.message()).await
            }
        };
        if sent.is_err() {
            break;
        }
    }
}

/// An echo server on 127.0.0.1:0 for tests, and the target that reaches it.
#[cfg(test)]
pub async fn spawn_for_test() -> (crate::visitor::Target, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let server = tokio::spawn(serve(listener));
    let target = crate::visitor::Target {
        url: format!("ws://{addr}/ws"),
        addr,
    };
    (target, server)
}
