//! Driving visitors against one target and measuring it.
//!
//! A run first connects every visitor (bounded concurrency, each says hello),
//! then starts the clock. Each visitor then asks questions one at a time:
//! - closed loop (default): send, wait for the reply, think, send again;
//!   latency is counted from the send;
//! - open loop (`--rate`): sends are scheduled at a fixed total rate spread
//!   evenly over the visitors, and latency is counted from the *scheduled*
//!   time, so a stalled server cannot hide its queue by slowing the generator
//!   down (coordinated omission). Sends still due when the clock runs out are
//!   reported as `unsent`.
//!
//! A conversation that escalates is dropped and a new one started, so load
//! stays on the bot path. Nothing is sent after the duration; replies still
//! in flight are waited for (at most the reply timeout) and counted.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::time::{sleep_until, Instant};

use crate::visitor::{Failure, Replied, Target, Visitor};
use crate::wire;

/// How sends are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// Each visitor sends its next message `think` after the previous reply.
    Closed { think: Duration },
    /// `rate` messages per second in total, each visitor taking every N-th slot.
    Open { rate: f64 },
}

/// What one run does: validated flags.
#[derive(Debug, Clone)]
pub struct Plan {
    pub visitors: usize,
    pub duration: Duration,
    pub pacing: Pacing,
    /// Most messages sent in total, if bounded.
    pub count: Option<u64>,
    /// How long to wait for a reply (and for a connection and its welcome).
    pub timeout: Duration,
    /// Source addresses to bind client sockets to, round robin; empty: the kernel picks.
    pub sources: Vec<IpAddr>,
    /// Connections being set up at once.
    pub connect_concurrency: usize,
}

impl Plan {
    fn source(&self, visitor: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[visitor % self.sources.len()])
    }
}

/// Latencies are recorded in microseconds, up to an hour, to three significant digits.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// Pause before a visitor whose connection failed tries again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Counters shared by the visitors of one run.
struct Stats {
    latency_us: Mutex<Histogram<u64>>,
    replies: AtomicU64,
    escalations: AtomicU64,
    error_frames: AtomicU64,
    disconnects: AtomicU64,
    timeouts: AtomicU64,
    connect_failures: AtomicU64,
    unsent: AtomicU64,
    /// Messages that may still be sent (when `--count` bounds the run).
    budget: Option<AtomicU64>,
    first_failure: Mutex<Option<String>>,
}

impl Stats {
    fn new(count: Option<u64>) -> Stats {
        Stats {
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
                    .expect("constant histogram bounds are valid"),
            ),
            replies: AtomicU64::new(0),
            escalations: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            budget: count.map(AtomicU64::new),
            first_failure: Mutex::new(None),
        }
    }

    /// Takes one message from the budget; false when it is spent.
    fn take_message(&self) -> bool {
        match &self.budget {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    fn budget_spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|left| left.load(Ordering::Relaxed) == 0)
    }

    fn record_reply(&self, latency: Duration) {
        self.replies.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut h) = self.latency_us.lock() {
            h.saturating_record(us);
        }
    }

    fn record_failure(&self, failure: &Failure) {
        let counter = match failure {
            Failure::Connect(_) => &self.connect_failures,
            Failure::ErrorFrame(_) => &self.error_frames,
            Failure::Disconnected(_) => &self.disconnects,
            Failure::Timeout => &self.timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_failure.lock() {
            first.get_or_insert_with(|| failure.to_string());
        }
    }
}

/// The figures of one run against one target.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub msgs_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Error frames, disconnects, timeouts and failed connections.
    pub errors: u64,
    pub replies: u64,
    pub escalations: u64,
    pub error_frames: u64,
    pub disconnects: u64,
    pub timeouts: u64,
    pub connect_failures: u64,
    /// Open loop: sends scheduled before the end that were never made because
    /// their visitor was still waiting for an earlier reply.
    pub unsent: u64,
    /// Visitors connected when the clock started.
    pub connected: usize,
    pub connect_secs: f64,
    /// From the start of the clock until the last visitor finished.
    pub elapsed_secs: f64,
    /// The first failure seen, to say what went wrong.
    pub first_failure: Option<String>,
}

/// Connects `plan.visitors` visitors (each says hello), at most
/// `plan.connect_concurrency` at a time. A visitor that fails is passed to
/// `on_failure` and leaves a `None` in its place.
pub async fn connect_all(
    target: &Target,
    plan: &Plan,
    mut on_failure: impl FnMut(&Failure),
) -> Vec<Option<Visitor>> {
    let mut visitors: Vec<Option<Visitor>> = (0..plan.visitors).map(|_| None).collect();
    let mut connecting = futures_util::stream::iter(0..plan.visitors)
        .map(|i| async move {
            let deadline = Instant::now() + plan.timeout;
            (i, Visitor::start(target, plan.source(i), deadline).await)
        })
        .buffer_unordered(plan.connect_concurrency);
    while let Some((i, result)) = connecting.next().await {
        match result {
            Ok(v) => visitors[i] = Some(v),
            Err(failure) => on_failure(&failure),
        }
    }
    visitors
}

/// Runs the plan against the target and returns its figures.
pub async fn run(target: &Target, plan: &Plan) -> Figures {
    let stats = Arc::new(Stats::new(plan.count));
    let began = Instant::now();
    let visitors = connect_all(target, plan, |f| stats.record_failure(f)).await;
    let connect_secs = began.elapsed().as_secs_f64();
    let connected = visitors.iter().filter(|v| v.is_some()).count();

    let start = Instant::now();
    let deadline = start + plan.duration;
    let target = Arc::new(target.clone());
    let plan = Arc::new(plan.clone());
    let tasks: Vec<_> = visitors
        .into_iter()
        .enumerate()
        .map(|(index, conn)| {
            let run = VisitorRun {
                index,
                target: target.clone(),
                plan: plan.clone(),
                stats: stats.clone(),
                start,
                deadline,
            };
            tokio::spawn(run.drive(conn))
        })
        .collect();
    for task in tasks {
        // A visitor task only ends by returning; a panic would be a bug in this
        // tool, and the others' figures still stand.
        if let Err(e) = task.await {
            eprintln!("frontdesk-load: a visitor task failed: {e}");
        }
    }
    let elapsed_secs = start.elapsed().as_secs_f64();
    figures(&stats, connected, connect_secs, elapsed_secs)
}

fn figures(stats: &Stats, connected: usize, connect_secs: f64, elapsed_secs: f64) -> Figures {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let ms = |us: u64| us as f64 / 1000.0;
    let (p50, p90, p99, max) = match stats.latency_us.lock() {
        Ok(h) if !h.is_empty() => (
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        ),
        _ => (0.0, 0.0, 0.0, 0.0),
    };
    let replies = load(&stats.replies);
    let (error_frames, disconnects, timeouts, connect_failures) = (
        load(&stats.error_frames),
        load(&stats.disconnects),
        load(&stats.timeouts),
        load(&stats.connect_failures),
    );
    Figures {
        msgs_per_s: if elapsed_secs > 0.0 {
            replies as f64 / elapsed_secs
        } else {
            0.0
        },
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        max_ms: max,
        errors: error_frames + disconnects + timeouts + connect_failures,
        replies,
        escalations: load(&stats.escalations),
        error_frames,
        disconnects,
        timeouts,
        connect_failures,
        unsent: load(&stats.unsent),
        connected,
        connect_secs,
        elapsed_secs,
        first_failure: stats.first_failure.lock().ok().and_then(|f| f.clone()),
    }
}

/// One visitor's part of a run.
struct VisitorRun {
    index: usize,
    target: Arc<Target>,
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    start: Instant,
    deadline: Instant,
}

impl VisitorRun {
    async fn drive(self, mut conn: Option<Visitor>) {
        let mut seq: u64 = 0;
        let mut slot: u64 = 0;
        loop {
            if self.stats.budget_spent() {
                return;
            }
            // When this message should go out, and what its latency counts from.
            let intended = match self.plan.pacing {
                Pacing::Closed { .. } => None,
                Pacing::Open { rate } => {
                    let at = self.start + self.slot_offset(rate, slot);
                    slot += 1;
                    if at >= self.deadline {
                        return;
                    }
                    if Instant::now() >= self.deadline {
                        self.count_unsent(rate, at);
                        return;
                    }
                    sleep_until(at).await;
                    Some(at)
                }
            };
            if Instant::now() >= self.deadline {
                return;
            }
            let visitor = match &mut conn {
                Some(v) => v,
                None => match self.reconnect().await {
                    Some(v) => conn.insert(v),
                    None => continue,
                },
            };
            if !self.stats.take_message() {
                return;
            }
            let id = format!("v{}-{seq}", self.index);
            let text = wire::question(self.index, seq);
            seq += 1;
            let sent = Instant::now();
            let from = intended.unwrap_or(sent);
            match visitor.ask(&id, text, sent + self.plan.timeout).await {
                Ok(replied) => {
                    self.stats.record_reply(from.elapsed());
                    if replied == Replied::Escalated {
                        self.stats.escalations.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
                Err(failure) => {
                    self.stats.record_failure(&failure);
                    if !matches!(failure, Failure::ErrorFrame(_)) {
                        conn = None;
                    }
                }
            }
            if let Pacing::Closed { think } = self.plan.pacing {
                if !think.is_zero() {
                    sleep_until((Instant::now() + think).min(self.deadline)).await;
                }
            }
        }
    }

    /// Offset from the start of this visitor's `slot`-th send: slots are
    /// `1/rate` apart overall, and visitor i takes slots i, i+N, i+2N, ...
    fn slot_offset(&self, rate: f64, slot: u64) -> Duration {
        let n = self.plan.visitors as f64;
        Duration::from_secs_f64((self.index as f64 + slot as f64 * n) / rate)
    }

    /// Counts this visitor's sends from `first_due` until the deadline.
    fn count_unsent(&self, rate: f64, first_due: Instant) {
        let interval = self.plan.visitors as f64 / rate;
        let left = (self.deadline - first_due).as_secs_f64();
        let unsent = (left / interval).ceil() as u64;
        self.stats.unsent.fetch_add(unsent, Ordering::Relaxed);
    }

    /// A new connection and conversation, or `None` (counted) after a pause.
    async fn reconnect(&self) -> Option<Visitor> {
        let deadline = (Instant::now() + self.plan.timeout).min(self.deadline);
        match Visitor::start(&self.target, self.plan.source(self.index), deadline).await {
            Ok(v) => Some(v),
            Err(failure) => {
                // Running out of time while connecting at the very end is not the server's fault.
                if Instant::now() < self.deadline {
                    self.stats.record_failure(&failure);
                    sleep_until((Instant::now() + RECONNECT_PAUSE).min(self.deadline)).await;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::echo::spawn_for_test as echo_target;

    const CLOSED: Pacing = Pacing::Closed {
        think: Duration::ZERO,
    };

    fn plan(visitors: usize, pacing: Pacing) -> Plan {
        Plan {
            visitors,
            duration: Duration::from_secs(5),
            pacing,
            count: None,
            timeout: Duration::from_secs(5),
            sources: Vec::new(),
            connect_concurrency: 2,
        }
    }

    #[tokio::test]
    async fn closed_loop_stops_at_the_count() {
        let (target, server) = echo_target().await;
        let plan = Plan {
            count: Some(40),
            ..plan(4, CLOSED)
        };
        let f = run(&target, &plan).await;
        assert_eq!((f.replies, f.errors, f.connected), (40, 0, 4), "{f:?}");
        assert!(f.p50_ms > 0.0 && f.p50_ms <= f.p99_ms && f.p99_ms <= f.max_ms);
        assert!(f.elapsed_secs < 5.0, "the count ended the run: {f:?}");
        server.abort();
    }

    #[tokio::test]
    async fn open_loop_sends_every_slot_before_the_deadline() {
        let (target, server) = echo_target().await;
        let plan = Plan {
            duration: Duration::from_millis(500),
            ..plan(4, Pacing::Open { rate: 200.0 })
        };
        let f = run(&target, &plan).await;
        // Slots are 5 ms apart: 100 of them start before 500 ms.
        assert_eq!((f.replies, f.unsent, f.errors), (100, 0, 0), "{f:?}");
        server.abort();
    }

    #[tokio::test]
    async fn a_missing_server_counts_failed_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let target = Target {
            url: format!("ws://{addr}/ws"),
            addr,
        };
        let plan = Plan {
            duration: Duration::from_millis(300),
            ..plan(2, CLOSED)
        };
        let f = run(&target, &plan).await;
        assert_eq!((f.replies, f.connected), (0, 0));
        assert!(
            f.connect_failures >= 2 && f.errors == f.connect_failures,
            "{f:?}"
        );
        assert!(f.first_failure.is_some());
    }

    #[test]
    fn visitors_take_interleaved_slots() {
        let run = VisitorRun {
            index: 1,
            target: Arc::new(Target {
                url: String::new(),
                addr: ([127, 0, 0, 1], 1).into(),
            }),
            plan: Arc::new(plan(4, Pacing::Open { rate: 100.0 })),
            stats: Arc::new(Stats::new(None)),
            start: Instant::now(),
            deadline: Instant::now(),
        };
        assert_eq!(run.slot_offset(100.0, 0), Duration::from_millis(10));
        assert_eq!(run.slot_offset(100.0, 1), Duration::from_millis(50));
    }

    #[test]
    fn the_budget_runs_out() {
        let stats = Stats::new(Some(2));
        assert!(stats.take_message() && stats.take_message());
        assert!(!stats.take_message());
        assert!(stats.budget_spent());
        assert!(Stats::new(None).take_message());
    }
}
