//! The HTTP server: routes, shared state, startup and graceful shutdown.
//!
//! [`run`] takes an already bound listener and any shutdown future, so tests
//! start a real server on `127.0.0.1:0` and stop it when they choose.

mod admin;
mod agent;
mod guard;
mod reload;
mod visitor;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::analytics::Rejection;
use crate::config::Config;
use crate::content::Content;
use crate::store::{Store, WriterGuard};

/// Shared state of a running server: a cheap-to-clone handle.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    content: ArcSwap<Content>,
    store: Store,
    connections: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    /// Each live websocket holds a clone; shutdown waits for all to drop.
    alive: mpsc::Sender<()>,
    reloads: ReloadStats,
    hub: crate::handoff::Hub,
    throttle: crate::handoff::Throttle,
    hours: crate::hours::Hours,
    metrics: crate::analytics::Metrics,
    reader: crate::store::Reader,
}

/// Outcomes of live content reloads.
#[derive(Default)]
struct ReloadStats {
    ok: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    /// The last failure (file:line: reason), cleared by a good reload.
    last_error: std::sync::Mutex<Option<String>>,
}

impl App {
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The content snapshot current at this moment.
    pub fn content(&self) -> Arc<Content> {
        self.inner.content.load_full()
    }

    /// Swaps in a new content snapshot; decisions in flight finish on the old one.
    pub fn set_content(&self, content: Content) {
        self.inner.content.store(Arc::new(content));
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Sends every agent the offline tickets as they are now, after a
    /// change to them has been stored.
    async fn tickets_changed(&self) {
        let hub = &self.inner.hub;
        let _turn = hub.tickets_turn().await;
        match self.store().tickets(agent::TICKETS_SHOWN).await {
            Ok(tickets) => {
                hub.to_agents(&crate::protocol::agent::AgentServerFrame::Tickets { tickets })
            }
            Err(e) => tracing::warn!(error = %e, "tickets not loaded"),
        }
    }

    /// Lets a websocket in when its page's origin is allowed, the server is
    /// not shutting down, and there is room (otherwise the response says
    /// which), and runs `session` on it once upgraded. Until the session
    /// ends, the connection keeps its place under `limits.max_connections`
    /// and shutdown waits for it.
    fn accept<F, S>(
        &self,
        ws: axum::extract::ws::WebSocketUpgrade,
        headers: &axum::http::HeaderMap,
        peer: guard::Peer,
        session: F,
    ) -> Response
    where
        F: FnOnce(axum::extract::ws::WebSocket, App) -> S + Send + 'static,
        S: Future<Output = ()> + Send + 'static,
    {
        if !visitor::origin_allowed(headers, &self.config().allowed_origins) {
            self.metrics().rejected(Rejection::Origin);
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
        if *self.inner.shutdown.borrow() {
            return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
        }
        let Ok(permit) = self.inner.connections.clone().try_acquire_owned() else {
            self.metrics().rejected(Rejection::MaxConnections);
            return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
        };
        let alive = self.inner.alive.clone();
        let app = self.clone();
        ws.on_upgrade(move |socket| async move {
            peer.upgraded();
            session(socket, app).await;
            drop(permit);
            drop(alive);
        })
    }

    /// The live counters behind `/metrics`.
    pub fn metrics(&self) -> &crate::analytics::Metrics {
        &self.inner.metrics
    }
}

/// A server ready to run: its state and what must be awaited to stop it cleanly.
pub struct Server {
    app: App,
    shutdown_tx: watch::Sender<bool>,
    alive_rx: mpsc::Receiver<()>,
    writer: WriterGuard,
}

impl Server {
    /// Opens the store and assembles the state. Content is loaded by the caller
    /// so that a bad content file stops startup with its own message.
    pub fn new(config: Config, content: Content) -> anyhow::Result<Server> {
        let (store, writer) =
            crate::store::Store::open(&config.data_dir, &config.store).map_err(|e| {
                anyhow::anyhow!("opening the store in {}: {e}", config.data_dir.display())
            })?;
        let reader = crate::store::Reader::open(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("opening the store for reading: {e}"))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (alive, alive_rx) = mpsc::channel(1);
        let connections = Arc::new(Semaphore::new(config.limits.max_connections));
        let hours = config
            .handoff
            .business_hours()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let app = App {
            inner: Arc::new(Inner {
                config,
                content: ArcSwap::from_pointee(content),
                store,
                connections,
                shutdown: shutdown_rx,
                alive,
                reloads: ReloadStats::default(),
                hub: Default::default(),
                throttle: Default::default(),
                hours,
                metrics: Default::default(),
                reader,
            }),
        };
        Ok(Server {
            app,
            shutdown_tx,
            alive_rx,
            writer,
        })
    }

    /// A handle to the state (for reloading content, say).
    pub fn app(&self) -> App {
        self.app.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, tells every
    /// visitor to reconnect, waits for their sessions to end, and flushes the store.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            app,
            shutdown_tx,
            mut alive_rx,
            writer,
        } = self;
        let router = router(app.clone());
        let retention = tokio::spawn(purge_old_conversations(app.clone()));
        let queue = tokio::spawn(broadcast_queue(app.clone()));
        let idle = tokio::spawn(close_idle_conversations(app.clone()));
        let watcher = if app.config().watch_content {
            let (intents, kb) = (
                app.config().intents.clone(),
                app.config().knowledge_base.clone(),
            );
            match reload::watch(app.clone(), intents, kb) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "content changes will not be picked up until restart");
                    None
                }
            }
        } else {
            None
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let notify = tokio::spawn(async move {
            shutdown.await;
            let _ = shutdown_tx.send(true);
            let _ = stop_tx.send(());
        });
        let limits = &app.config().limits;
        let listener = guard::GuardedListener::new(
            listener,
            guard::GuardLimits {
                per_address: limits.max_connections_per_address,
                handshaking: limits.max_handshaking,
                handshake_timeout: std::time::Duration::from_secs(limits.handshake_timeout_secs),
            },
            app.metrics().rejections(),
        );
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<guard::Peer>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .await?;
        notify.abort();
        retention.abort();
        let _ = retention.await;
        queue.abort();
        let _ = queue.await;
        idle.abort();
        let _ = idle.await;
        // The reload task holds the state; it ends when the watcher is gone.
        drop(watcher);
        // Sessions see the shutdown flag, close their sockets and drop their `alive` clones.
        drop(app);
        while alive_rx.recv().await.is_some() {}
        tokio::task::spawn_blocking(move || writer.join()).await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Tells agents the queue and queued visitors their positions whenever the
/// queue changes; changes in quick succession are told once.
async fn broadcast_queue(app: App) {
    let hub = &app.inner.hub;
    loop {
        hub.next_queue_change().await;
        let store = app.store();
        let (queue, interval) = match tokio::try_join!(store.queue(), store.pickup_interval_ms()) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "queue not loaded");
                continue;
            }
        };
        let order: Vec<String> = queue.iter().map(|e| e.conversation_id.clone()).collect();
        let oldest = queue.iter().map(|e| e.waiting_ms).max().unwrap_or(0);
        app.metrics().queue(queue.len(), oldest);
        hub.send_positions(&order, interval);
        hub.to_agents(&crate::protocol::agent::AgentServerFrame::Queue { entries: queue });
    }
}

/// Closes conversations with the bot that have gone quiet, deciding their
/// outcome; a visitor who comes back within the reopen window reopens theirs.
async fn close_idle_conversations(app: App) {
    let minutes = app.config().conversations.idle_close_minutes;
    if minutes == 0 {
        return;
    }
    let every = std::time::Duration::from_secs((minutes * 60 / 4).clamp(5, 60));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let before = crate::store::now_ms() - (minutes * 60_000) as i64;
        match app.store().close_idle(before).await {
            Ok(closed) => {
                for (id, outcome) in closed {
                    app.metrics().closed(&outcome);
                    let hub = &app.inner.hub;
                    hub.to_visitor(&id, crate::handoff::VisitorEvent::State("closed"));
                    hub.to_visitor(
                        &id,
                        crate::handoff::VisitorEvent::frame(crate::protocol::ServerFrame::Closed {
                            outcome,
                        }),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "idle conversations not closed"),
        }
    }
}

/// Deletes conversations older than the retention period, at start and hourly.
async fn purge_old_conversations(app: App) {
    let days = app.config().store.retention_days;
    if days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let before = crate::store::now_ms() - i64::from(days) * 86_400_000;
        match app.store().purge_before(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                conversations = n,
                days,
                "purged conversations past the retention period"
            ),
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
    }
}

/// The routes.
pub fn router(app: App) -> Router {
    let routes = Router::new()
        .route(
            "/",
            get(|| {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("../../web/index.html"),
                )
            }),
        )
        .route(
            "/shop.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../../web/shop.css"),
                )
            }),
        )
        .route(
            "/favicon.svg",
            get(|| asset("image/svg+xml", include_str!("../../web/favicon.svg"))),
        )
        .route(
            "/widget.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../web/widget.js"),
                )
            }),
        )
        .route(
            "/agent",
            get(|| {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("../../web/agent.html"),
                )
            }),
        )
        .route(
            "/agent.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../web/agent.js"),
                )
            }),
        )
        .route(
            "/agent.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../../web/agent.css"),
                )
            }),
        )
        .route("/healthz", get(healthz))
        // Browsers ask for an icon on every page; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(metrics))
        .route(
            "/admin",
            get(|| {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("../../web/admin.html"),
                )
            }),
        )
        .route(
            "/admin.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../web/admin.js"),
                )
            }),
        )
        .route(
            "/admin.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../../web/admin.css"),
                )
            }),
        )
        .route("/api/stats", get(admin::stats))
        .route("/api/stats.csv", get(admin::stats_csv))
        .route("/api/gaps", get(admin::gaps))
        .route("/ws", get(visitor::upgrade))
        .route("/agent/ws", get(agent::upgrade));
    let routes = if app.config().websocket_echo {
        routes.route("/ws-echo", get(visitor::echo))
    } else {
        routes
    };
    routes
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(guard::request_seen))
        .with_state(app)
}

/// A file embedded in the binary.
async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Headers on every response: pages load scripts, styles and connections
/// from this server only, and nothing inline.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, axum::http::HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    response
}

/// `/metrics`: Prometheus text exposition.
async fn metrics(State(app): State<App>) -> Response {
    // Counting the open descriptors lists them all, tens of milliseconds
    // with tens of thousands of connections: off the runtime's threads.
    let process = tokio::task::spawn_blocking(crate::analytics::process::Process::read)
        .await
        .ok()
        .flatten();
    let content = app.content();
    let reloads = &app.inner.reloads;
    let body = app.metrics().render(&crate::analytics::Gauges {
        store: app.store().stats(),
        agents_online: app.inner.hub.online().len(),
        reloads_ok: reloads.ok.load(std::sync::atomic::Ordering::Relaxed),
        reloads_failed: reloads.failed.load(std::sync::atomic::Ordering::Relaxed),
        intents: content.intents.intents.len(),
        articles: content.kb.documents().count(),
        process,
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthz(State(app): State<App>) -> Response {
    let content = app.content();
    if *app.inner.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let reloads = &app.inner.reloads;
    let last_error = reloads
        .last_error
        .lock()
        .expect("reload error lock")
        .clone();
    Json(serde_json::json!({
        "status": "ok",
        "intents": content.intents.intents.len(),
        "articles": content.kb.documents().count(),
        "reloads": reloads.ok.load(std::sync::atomic::Ordering::Relaxed),
        "reload_errors": reloads.failed.load(std::sync::atomic::Ordering::Relaxed),
        "last_reload_error": last_error,
    }))
    .into_response()
}

/// Descriptors the server holds besides its connections, with some room: the
/// database, its log and shared memory on each of its connections, the
/// listener, the runtime's own and the content watcher's (24 in all when
/// serving the demo content).
const FILES_BESIDE_CONNECTIONS: u64 = 32;

/// Every connection holds a descriptor: raises the soft open-files limit to
/// the hard one, and says so if even that is short of `max_connections`.
fn raise_open_files_limit(max_connections: usize) {
    match crate::fdlimit::raise_open_files_limit() {
        Ok(files) if files < max_connections as u64 + FILES_BESIDE_CONNECTIONS => tracing::warn!(
            open_files = files,
            max_connections,
            "the open-files limit is short of limits.max_connections: past about {} \
             connections, new ones wait for a descriptor to be freed; raise the hard limit \
             (`ulimit -Hn`, LimitNOFILE= in a systemd unit) or lower max_connections",
            files.saturating_sub(FILES_BESIDE_CONNECTIONS)
        ),
        Ok(files) => tracing::info!(open_files = files, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "the open-files limit is left as it is"),
    }
}

/// Starts tracing, loads content, binds and serves until SIGINT or SIGTERM.
pub fn serve_main(config: Config) -> anyhow::Result<()> {
    init_tracing();
    raise_open_files_limit(config.limits.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let content = Content::load(&config.intents, &config.knowledge_base)
            .map_err(|e| anyhow::anyhow!("content not loaded: {e}"))?;
        tracing::info!(
            intents = content.intents.intents.len(),
            articles = content.kb.documents().count(),
            "content loaded"
        );
        // The store is open and migrated before the address is announced, so
        // whatever waits for the address finds the database ready.
        let listen = config.listen;
        let data = config.data_dir.clone();
        let server = Server::new(config, content)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, data = %data.display(), "serving");
        server
            .run(listener, async {
                shutdown_signal().await;
                tracing::info!("shutdown requested: closing connections and flushing");
            })
            .await
    })
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("FRONTDESK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
