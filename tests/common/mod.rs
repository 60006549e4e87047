//! Shared helpers: a real server on 127.0.0.1:0 (in this process or as the
//! built binary) and a tokio-tungstenite visitor client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use frontdesk::config::Config;
use frontdesk::content::Content;
use frontdesk::server::Server;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Configuration for the fixture content with a fresh data directory.
pub fn config(data: &Path) -> Config {
    Config {
        data_dir: data.to_path_buf(),
        intents: fixtures().join("intents.toml"),
        knowledge_base: fixtures().join("kb"),
        ..Config::default()
    }
}

/// Every file of a data directory (database, WAL, ...) as one lossy string,
/// for checking what is and is not on disk.
pub fn database_text(data: &Path) -> String {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: frontdesk::server::App,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let content =
            Content::load(&config.intents, &config.knowledge_base).expect("fixture content loads");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(config, content).unwrap();
        let app = server.app();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            app,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn agent_url(&self) -> String {
        format!("ws://{}/agent/ws", self.addr)
    }

    /// Adds an agent and returns their token.
    pub async fn add_agent(&self, name: &str) -> String {
        let token = frontdesk::handoff::random_token(32);
        let added = self
            .app
            .store()
            .add_agent(name.into(), frontdesk::handoff::hash_token(&token), false)
            .await
            .unwrap();
        assert!(added);
        token
    }

    /// Triggers shutdown and waits until the server has drained and flushed.
    pub async fn stop(self) {
        // The server waits for every handle to its state to be dropped.
        let TestServer {
            app, stop, task, ..
        } = self;
        drop(app);
        let _ = stop.unwrap().send(());
        let task = task.unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("server drains within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// A response to [`http_get`].
pub struct HttpResponse {
    pub status: u16,
    /// The header lines, lowercased.
    pub headers: String,
    pub body: String,
}

/// A plain HTTP/1.0 GET (so the body is neither chunked nor kept alive).
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    try_http_get(addr, path, headers)
        .await
        .expect("a response within 10 s")
}

/// [`http_get`], or the error if the server closed the connection without
/// a response (a connection refused as it was accepted, say) or took over
/// 10 s.
pub async fn try_http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut raw)).await??;
    let no_response = || std::io::Error::other(format!("no HTTP response: {raw:?}"));
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(no_response)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(no_response)?;
    Ok(HttpResponse {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

/// The value of one series in a `/metrics` exposition, e.g.
/// `frontdesk_frames_refused_total{reason="rate_limited"}`.
pub fn metric(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from:\n{exposition}"))
}

/// One series' value as the server at `addr` reports it now on `/metrics`.
pub async fn scrape(addr: SocketAddr, series: &str) -> f64 {
    metric(&http_get(addr, "/metrics", &[]).await.body, series)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket to `url` on `addr` over a socket with a 4 KiB receive buffer,
/// which a client that does not read fills after a few frames; with the
/// socket's local port, to find the connection in `/proc/net/tcp`.
pub async fn connect_with_small_receive_buffer(addr: SocketAddr, url: String) -> (Ws, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .expect("websocket connects");
    (ws, port)
}

/// A visitor's websocket client.
pub struct Visitor {
    pub ws: Ws,
}

impl Visitor {
    pub async fn connect(url: &str) -> Visitor {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Visitor { ws }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.unwrap();
    }

    /// The next JSON frame from the server (5 s at most).
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a frame within 5 s")
                .expect("connection open")
                .expect("valid websocket message");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
                Message::Close(c) => panic!("connection closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame, which must have the given type.
    pub async fn expect(&mut self, ty: &str) -> Value {
        let f = self.recv().await;
        assert_eq!(f["type"], ty, "expected a {ty} frame, got {f}");
        f
    }

    /// Starts a new conversation; returns the welcome frame.
    pub async fn hello(&mut self) -> Value {
        self.send(json!({"type": "hello", "v": 1})).await;
        self.expect("welcome").await
    }

    /// Resumes a conversation; returns the welcome frame.
    pub async fn resume(&mut self, welcome: &Value) -> Value {
        self.send(json!({
            "type": "hello", "v": 1,
            "conversation_id": welcome["conversation_id"],
            "resume_token": welcome["resume_token"],
        }))
        .await;
        self.expect("welcome").await
    }

    /// Sends a message and returns the reply after checking its ack.
    pub async fn ask(&mut self, id: &str, text: &str) -> Value {
        self.send(json!({"type": "message", "id": id, "text": text}))
            .await;
        let ack = self.expect("ack").await;
        assert_eq!(ack["id"], id);
        self.expect("reply").await
    }
}

/// An agent's websocket client. Frames that a test is not waiting for yet
/// are kept, so broadcasts arriving in any order do not upset it.
pub struct Agent {
    pub ws: Ws,
    pending: Vec<Value>,
}

impl Agent {
    /// A client over a websocket connected some other way.
    pub fn from_ws(ws: Ws) -> Agent {
        Agent {
            ws,
            pending: Vec::new(),
        }
    }

    /// Connects without signing in.
    pub async fn connect(url: &str) -> Agent {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Agent {
            ws,
            pending: Vec::new(),
        }
    }

    /// Connects and signs in; returns the client and the welcome frame.
    pub async fn sign_in(url: &str, token: &str) -> (Agent, Value) {
        let mut a = Agent::connect(url).await;
        a.send(json!({"type": "auth", "token": token})).await;
        let welcome = a.expect("welcome").await;
        (a, welcome)
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// The next frame from the wire (5 s at most); `None` once closed.
    pub async fn next_frame(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a frame within 5 s")?;
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The first frame of type `ty` that matches `pred`, kept or next to arrive.
    pub async fn expect_where(&mut self, ty: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(|f| f["type"] == ty && pred(f)) {
            return self.pending.remove(i);
        }
        loop {
            let f = self.next_frame().await.unwrap_or_else(|| {
                panic!("closed while waiting for {ty}; kept {:?}", self.pending)
            });
            if f["type"] == ty && pred(&f) {
                return f;
            }
            self.pending.push(f);
        }
    }

    pub async fn expect(&mut self, ty: &str) -> Value {
        self.expect_where(ty, |_| true).await
    }
}

/// The built `frontdesk` binary running as its own process.
pub struct Process {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Everything the server has logged so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Process {
    /// Starts `frontdesk serve` on a free port with the fixture content.
    pub fn start(data: &Path) -> Process {
        Process::start_under(&[], data)
    }

    /// Starts `frontdesk serve` as the last argument of `wrapper` (strace, say).
    pub fn start_under(wrapper: &[&str], data: &Path) -> Process {
        Process::spawn(wrapper, data, "info")
    }

    /// Starts `frontdesk serve` logging at `level` (an `EnvFilter` expression).
    pub fn start_logging(data: &Path, level: &str) -> Process {
        Process::spawn(&[], data, level)
    }

    fn spawn(wrapper: &[&str], data: &Path, level: &str) -> Process {
        use std::io::BufRead;
        let binary = env!("CARGO_BIN_EXE_frontdesk");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => std::process::Command::new(binary),
        };
        // Its own process group, so a kill reaches a wrapped server too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--intents")
            .arg(fixtures().join("intents.toml"))
            .arg("--kb")
            .arg(fixtures().join("kb"))
            .env("FRONTDESK_LOG", level)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("frontdesk binary starts");
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let addr = loop {
            let line = lines
                .next()
                .expect("server logs its address before exiting")
                .unwrap();
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Process { child, addr, log }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL to the server (and anything wrapping it), then waits.
    pub fn kill(mut self) {
        // SAFETY: kill(2) with a process group id; no memory is involved.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        self.child.wait().unwrap();
    }
}
