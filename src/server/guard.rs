//! The listener in front of everything: caps connections per client address
//! and connections still in their handshake, and closes a connection that
//! has not sent a complete request within the handshake timeout (or that
//! sits idle between plain HTTP requests for as long). Slow or greedy clients
//! cannot hold sockets this way; upgraded websockets have their own limits.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::analytics::{Rejection, Rejections};

/// Limits the listener enforces.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    pub per_address: usize,
    pub handshaking: usize,
    pub handshake_timeout: Duration,
}

#[derive(Default)]
struct Counts {
    per_address: Mutex<HashMap<IpAddr, usize>>,
    handshaking: AtomicUsize,
    /// Where `/metrics` reads the refusals and the handshake timeouts.
    metrics: Arc<Rejections>,
}

/// Accepts TCP connections within the limits.
pub struct GuardedListener {
    inner: TcpListener,
    limits: GuardLimits,
    counts: Arc<Counts>,
    /// Accepts that failed since the last one logged, and when that was.
    accept_failures: u64,
    accept_failure_logged: Option<tokio::time::Instant>,
}

/// How long a failing `accept` waits before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// While `accept` keeps failing (out of file descriptors, say), one line
/// this often says so, with the number of failures since the line before.
const ACCEPT_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

impl GuardedListener {
    /// A listener counting what it refuses in `refusals`.
    pub fn new(
        inner: TcpListener,
        limits: GuardLimits,
        refusals: Arc<Rejections>,
    ) -> GuardedListener {
        GuardedListener {
            inner,
            limits,
            counts: Arc::new(Counts {
                metrics: refusals,
                ..Counts::default()
            }),
            accept_failures: 0,
            accept_failure_logged: None,
        }
    }

    /// Notes a failed `accept`, logging it if none was logged lately.
    fn accept_failed(&mut self, error: &std::io::Error) {
        self.accept_failures += 1;
        let now = tokio::time::Instant::now();
        if self
            .accept_failure_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_FAILURE_LOG_EVERY)
        {
            tracing::warn!(
                %error,
                failures = self.accept_failures,
                "accept failed; new connections wait in the listen queue, and accept is tried every {} ms (logged at most every {} s)",
                ACCEPT_RETRY.as_millis(),
                ACCEPT_FAILURE_LOG_EVERY.as_secs()
            );
            self.accept_failures = 0;
            self.accept_failure_logged = Some(now);
        }
    }
}

/// What a handler knows about its connection.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    meta: Arc<Meta>,
}

impl Peer {
    /// The connection has been upgraded to a websocket: the websocket's own
    /// idle timeout applies from now on.
    pub fn upgraded(&self) {
        self.meta.upgraded.store(true, Ordering::Relaxed);
    }

    /// When the kernel received the segment that brought the last bytes
    /// read from the upgraded connection, on the monotonic clock (reckoned
    /// back from `now`, and never before the connection was accepted, should
    /// the wall clock have stepped); `now` if the kernel gave no stamp.
    pub fn received(&self, now: std::time::Instant) -> std::time::Instant {
        match self.meta.received_us.load(Ordering::Relaxed) {
            0 => now,
            us => {
                crate::rxstamp::instant_of(std::time::UNIX_EPOCH + Duration::from_micros(us), now)
                    .max(self.meta.accepted.into_std())
            }
        }
    }
}

struct Meta {
    /// A complete request has arrived.
    request_seen: AtomicBool,
    upgraded: AtomicBool,
    /// Requests being answered: a connection is not idle while one is.
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` of the last sign of life once the
    /// handshake is over (a request, a response, bytes read).
    last_active_ms: std::sync::atomic::AtomicU64,
    accepted: tokio::time::Instant,
    counts: Arc<Counts>,
    /// Still counted among the connections in their handshake.
    handshaking: AtomicBool,
    /// Once upgraded: when the kernel received the last segment read, in
    /// microseconds of wall-clock time since the epoch (0: no stamp yet).
    received_us: std::sync::atomic::AtomicU64,
}

impl Meta {
    fn touch(&self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn end_handshake(&self) {
        if self.handshaking.swap(false, Ordering::AcqRel) {
            self.counts.handshaking.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            meta: stream.io().meta.clone(),
        }
    }
}

/// Marks that a complete request arrived on the connection: its handshake is over.
pub async fn request_seen(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<Peer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let meta = &peer.meta;
    meta.request_seen.store(true, Ordering::Relaxed);
    meta.end_handshake();
    meta.in_flight.fetch_add(1, Ordering::AcqRel);
    meta.touch();
    let response = next.run(request).await;
    meta.touch();
    meta.in_flight.fetch_sub(1, Ordering::AcqRel);
    response
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = match self.inner.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    self.accept_failed(&e);
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            let ip = addr.ip();
            let counts = &self.counts;
            if counts.handshaking.load(Ordering::Acquire) >= self.limits.handshaking {
                self.refuse(
                    addr,
                    Rejection::Handshaking,
                    "too many connections in their handshake",
                );
                continue;
            }
            {
                let mut map = counts.per_address.lock().expect("address counts");
                let n = map.entry(ip).or_default();
                if *n >= self.limits.per_address {
                    drop(map);
                    self.refuse(
                        addr,
                        Rejection::PerAddress,
                        "too many connections from this address",
                    );
                    continue;
                }
                *n += 1;
            }
            counts.handshaking.fetch_add(1, Ordering::AcqRel);
            // Replies go out as several small frames (ack, reply, queue);
            // without TCP_NODELAY, Nagle's algorithm holds the second one for
            // the client's delayed ACK (about 40 ms).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            let meta = Arc::new(Meta {
                request_seen: AtomicBool::new(false),
                upgraded: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                last_active_ms: std::sync::atomic::AtomicU64::new(0),
                accepted: tokio::time::Instant::now(),
                counts: counts.clone(),
                handshaking: AtomicBool::new(true),
                received_us: std::sync::atomic::AtomicU64::new(0),
            });
            // Frames' arrival times, for the replies' latency (`rxstamp`).
            crate::rxstamp::enable(&tcp);
            let stream = GuardedStream {
                tcp,
                ip,
                meta,
                timeout: self.limits.handshake_timeout,
                deadline: Box::pin(tokio::time::sleep(self.limits.handshake_timeout)),
            };
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl GuardedListener {
    fn refuse(&self, addr: SocketAddr, counted: Rejection, why: &'static str) {
        let counts = &self.counts.metrics;
        counts.count(counted);
        // The listener alone refuses for these two reasons, one at a time.
        let refused = counts.get(Rejection::Handshaking) + counts.get(Rejection::PerAddress);
        // One line per thousand refusals: a flood must not flood the log too.
        if (refused - 1).is_multiple_of(1000) {
            tracing::warn!(%addr, refused, "connection refused: {why}");
        }
    }
}

/// A TCP connection counted against its address until it is dropped.
pub struct GuardedStream {
    tcp: TcpStream,
    ip: IpAddr,
    meta: Arc<Meta>,
    timeout: Duration,
    /// Until a request arrives: the handshake deadline; between plain HTTP
    /// requests: the idle deadline. Not polled once upgraded.
    deadline: Pin<Box<Sleep>>,
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.meta.end_handshake();
        let mut map = self.meta.counts.per_address.lock().expect("address counts");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let meta = &this.meta;
        if meta.upgraded.load(Ordering::Relaxed) {
            let stamp = std::task::ready!(crate::rxstamp::poll_read(&this.tcp, cx, buf))?;
            if let Some(at) = stamp {
                let us = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                meta.received_us.store(us, Ordering::Relaxed);
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // Bytes between requests are a sign of life; bytes of the first
                // request are not, or a client could trickle its headers forever.
                if buf.filled().len() > before && meta.request_seen.load(Ordering::Relaxed) {
                    meta.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // The deadline passed: close the connection unless it has been
                // busy or alive since, in which case the deadline moves on.
                let now = tokio::time::Instant::now();
                let next = if meta.in_flight.load(Ordering::Acquire) > 0 {
                    now + this.timeout
                } else if meta.request_seen.load(Ordering::Relaxed) {
                    let last = Duration::from_millis(meta.last_active_ms.load(Ordering::Relaxed));
                    meta.accepted + last + this.timeout
                } else {
                    now
                };
                if next <= now {
                    if !meta.request_seen.load(Ordering::Relaxed) {
                        meta.counts.metrics.count(Rejection::HandshakeTimeout);
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request in time",
                    )));
                }
                this.deadline.as_mut().reset(next);
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
