//! Driving visitors against one target and measuring it.
//!
//! A run first connects every visitor (bounded concurrency, each says hello),
//! then starts the clock. Each visitor then asks questions one at a time:
//! - closed loop (default): send, wait for the reply, think, send again;
//!   latency is counted from the send;
//! - open loop (`--rate`): sends are scheduled at a fixed total rate spread
//!   evenly over the visitors, and latency is counted from the *scheduled*
//!   time, so a stalled server cannot hide its queue by slowing the generator
//!   down (coordinated omission). The pacer (`pacer.rs`) wakes each visitor
//!   at its slot to the microsecond, and how late the generator still sent is
//!   reported beside the latency. Sends still due when the clock runs out are
//!   reported as `unsent`.
//!
//! A conversation that escalates is dropped and a new one started, so load
//! stays on the bot path. A visitor whose connection is lost (a server
//! restart, say) reconnects with backoff, resumes its conversation with the
//! token from `welcome`, and sends a message that was not acknowledged again
//! with the same id, as the widget does. Nothing is sent after the duration
//! (or after [`Stop`]); replies still in flight are waited for (at most the
//! reply timeout) and counted.
//!
//! With a warm-up, the same load runs for that long before the duration
//! starts, and only what follows is measured: latencies of messages sent (or,
//! in the open loop, due) after it, and throughput from replies received after
//! it. A server's first second (its caches, its memory, its regexes' lazily
//! built automata all cold) is then left out of figures meant to describe it
//! in steady state. Errors are counted from the first message, warm-up
//! included.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

use crate::acklog::AckLog;
use crate::pacer::Pacer;
use crate::visitor::{Conversation, Failure, Replied, Target, Visitor};
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
    /// How long the load is measured, after the warm-up.
    pub duration: Duration,
    /// How long the same load runs, unmeasured, before the duration starts.
    pub warmup: Duration,
    pub pacing: Pacing,
    /// Most messages sent in total, if bounded.
    pub count: Option<u64>,
    /// How long to wait for a reply (and for a connection and its welcome).
    pub timeout: Duration,
    /// Source addresses to bind client sockets to, round robin; empty: the kernel picks.
    pub sources: Vec<IpAddr>,
    /// Connections being set up at once.
    pub connect_concurrency: usize,
    /// Every N-th message of a visitor asks for a person (0: never), which
    /// puts its conversation in the queue; the visitor then starts a new one.
    pub escalate_every: u64,
    /// Each message in its own mix of upper and lower case, so that no text
    /// repeats word for word.
    pub vary_case: bool,
}

impl Plan {
    fn source(&self, visitor: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[visitor % self.sources.len()])
    }
}

/// Latencies are recorded in microseconds, up to an hour, to three significant digits.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// Pause before a visitor whose connection failed tries again; it doubles
/// with each failure in a row, up to [`MAX_RECONNECT_PAUSE`].
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(2);

/// Pause after the `failures`-th failed connection in a row: 100 ms doubling
/// to 2 s, stretched by up to 22% depending on the visitor so that visitors
/// cut off together (by a restart) do not all come back at the same moment.
fn backoff(failures: u32, visitor: usize) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    let base = (RECONNECT_PAUSE * (1 << doublings)).min(MAX_RECONNECT_PAUSE);
    base + base.mul_f64((visitor % 8) as f64 / 32.0)
}

/// Ends a run early: no more messages are sent, replies in flight are still
/// collected and counted.
#[derive(Debug, Default)]
pub struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn trigger(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Resolves once the stop is triggered.
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps until `at`, or less if the stop comes first.
    async fn sleep_until(&self, at: Instant) {
        tokio::select! {
            _ = sleep_until(at) => {}
            _ = self.wait() => {}
        }
    }

    /// Sleeps until `at` by the pacer's timer (to the microsecond rather than
    /// the millisecond), or less if the stop comes first.
    async fn pace_until(&self, pacer: &Pacer, at: Instant) {
        tokio::select! {
            _ = pacer.sleep_until(at.into_std()) => {}
            _ = self.wait() => {}
        }
    }
}

/// What a run is given besides its plan.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Every ack received is recorded here.
    pub acks: Option<Arc<AckLog>>,
    pub stop: Arc<Stop>,
}

/// An empty histogram of times in microseconds, up to an hour.
fn times_us() -> Mutex<Histogram<u64>> {
    Mutex::new(
        Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
            .expect("constant histogram bounds are valid"),
    )
}

/// A duration in whole microseconds, at least 1 (the histograms' lowest).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Counters shared by the visitors of one run.
struct Stats {
    latency_us: Mutex<Histogram<u64>>,
    /// Open loop: how late the generator itself sent each measured message
    /// whose visitor was waiting for its slot (not behind schedule): the
    /// part of every latency that is the generator's, not the target's.
    send_late_us: Mutex<Histogram<u64>>,
    /// Latencies up to the reply's arrival at the socket (see
    /// [`Figures::at_socket`]).
    at_socket_us: Mutex<Histogram<u64>>,
    replies: AtomicU64,
    /// Replies received during the warm-up, not counted in `replies`.
    warmup_replies: AtomicU64,
    escalations: AtomicU64,
    /// Error frames by their `code`.
    error_codes: Mutex<BTreeMap<String, u64>>,
    disconnects: AtomicU64,
    timeouts: AtomicU64,
    connect_failures: AtomicU64,
    unsent: AtomicU64,
    resumed: AtomicU64,
    resent: AtomicU64,
    resent_stored: AtomicU64,
    /// Messages that may still be sent (when `--count` bounds the run).
    budget: Option<AtomicU64>,
    first_failure: Mutex<Option<String>>,
}

impl Stats {
    fn new(count: Option<u64>) -> Stats {
        Stats {
            latency_us: times_us(),
            send_late_us: times_us(),
            at_socket_us: times_us(),
            replies: AtomicU64::new(0),
            warmup_replies: AtomicU64::new(0),
            escalations: AtomicU64::new(0),
            error_codes: Mutex::default(),
            disconnects: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            resent_stored: AtomicU64::new(0),
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

    /// A reply received at `now` to a message sent (or due) at `from`:
    /// counted towards throughput if received after `measured_from`, its
    /// latency recorded if sent after it.
    /// `arrived`: when the reply reached the socket, if known (clamped to
    /// between `from` and `now`).
    fn record_reply(
        &self,
        from: Instant,
        now: Instant,
        arrived: Option<Instant>,
        measured_from: Instant,
    ) {
        if now < measured_from {
            self.warmup_replies.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.replies.fetch_add(1, Ordering::Relaxed);
        if from < measured_from {
            return;
        }
        if let Ok(mut h) = self.latency_us.lock() {
            h.saturating_record(micros(now - from));
        }
        if let Some(arrived) = arrived {
            let arrived = arrived.clamp(from, now);
            if let Ok(mut h) = self.at_socket_us.lock() {
                h.saturating_record(micros(arrived - from));
            }
        }
    }

    /// A message due at `due`, whose visitor was ready before then, went
    /// out at `sent`.
    fn record_send(&self, due: Instant, sent: Instant, measured_from: Instant) {
        if due < measured_from {
            return;
        }
        if let Ok(mut h) = self.send_late_us.lock() {
            h.saturating_record(micros(sent.saturating_duration_since(due)));
        }
    }

    fn record_failure(&self, failure: &Failure) {
        let counter = match failure {
            Failure::Connect(_) => Some(&self.connect_failures),
            Failure::ErrorFrame(code) => {
                if let Ok(mut codes) = self.error_codes.lock() {
                    *codes.entry(code.clone()).or_default() += 1;
                }
                None
            }
            Failure::Disconnected(_) => Some(&self.disconnects),
            Failure::Timeout => Some(&self.timeouts),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
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
    /// Open loop: how late the generator sent the messages whose visitors
    /// were ready for them, at the median, the 99th percentile and worst
    /// (`None` in the closed loop).
    pub send_late: Option<Spread>,
    /// Reply latency counted to the reply's arrival at the generator's socket
    /// (the kernel's receive stamp) instead of to its reading: what the
    /// generator's own reading adds is left out. `None` without stamps.
    pub at_socket: Option<Spread>,
    /// Error frames, disconnects, timeouts and failed connections.
    pub errors: u64,
    pub replies: u64,
    /// Replies received during the warm-up (not in `replies`).
    pub warmup_replies: u64,
    pub escalations: u64,
    pub error_frames: u64,
    /// Error frames by their `code` (`rate_limited`, say).
    pub error_codes: BTreeMap<String, u64>,
    pub disconnects: u64,
    pub timeouts: u64,
    pub connect_failures: u64,
    /// Open loop: sends scheduled before the end that were never made because
    /// their visitor was still waiting for an earlier reply.
    pub unsent: u64,
    /// Conversations resumed on a new connection after the old one was lost.
    pub resumed: u64,
    /// Messages sent again, with the same id, after such a resume.
    pub resent: u64,
    /// Of those, the ones the server had stored before the connection was
    /// lost (acknowledged again, not answered again).
    pub resent_stored: u64,
    /// Visitors connected when the clock started.
    pub connected: usize,
    pub connect_secs: f64,
    /// From the end of the warm-up until the last visitor finished.
    pub elapsed_secs: f64,
    pub warmup_secs: f64,
    /// The first failure seen, to say what went wrong.
    pub first_failure: Option<String>,
}

/// The median, 99th percentile and worst of a set of times, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
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
            (
                i,
                Visitor::start(target, plan.source(i), deadline, None).await,
            )
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
#[cfg(test)]
pub async fn run(target: &Target, plan: &Plan) -> Figures {
    run_with(target, plan, Hooks::default()).await
}

/// Runs the plan against the target, recording acks and heeding a stop as
/// `hooks` say, and returns its figures.
pub async fn run_with(target: &Target, plan: &Plan, hooks: Hooks) -> Figures {
    let stats = Arc::new(Stats::new(plan.count));
    let began = Instant::now();
    let visitors = connect_all(target, plan, |f| stats.record_failure(f)).await;
    let connect_secs = began.elapsed().as_secs_f64();
    let connected = visitors.iter().filter(|v| v.is_some()).count();

    let start = Instant::now();
    let measured_from = start + plan.warmup;
    let deadline = measured_from + plan.duration;
    let target = Arc::new(target.clone());
    let plan = Arc::new(plan.clone());
    let pacer = match plan.pacing {
        Pacing::Open { .. } => match Pacer::start() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("frontdesk-load: no pacer ({e}); sends are timed to the millisecond");
                None
            }
        },
        Pacing::Closed { .. } => None,
    };
    let tasks: Vec<_> = visitors
        .into_iter()
        .enumerate()
        .map(|(index, conn)| {
            let run = VisitorRun {
                index,
                target: target.clone(),
                plan: plan.clone(),
                stats: stats.clone(),
                hooks: hooks.clone(),
                pacer: pacer.clone(),
                start,
                measured_from,
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
    let elapsed_secs = measured_from.elapsed().as_secs_f64();
    figures(
        &stats,
        connected,
        connect_secs,
        elapsed_secs,
        plan.warmup.as_secs_f64(),
    )
}

fn figures(
    stats: &Stats,
    connected: usize,
    connect_secs: f64,
    elapsed_secs: f64,
    warmup_secs: f64,
) -> Figures {
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
    let spread = |h: &Mutex<Histogram<u64>>| match h.lock() {
        Ok(h) if !h.is_empty() => Some(Spread {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }),
        _ => None,
    };
    let send_late = spread(&stats.send_late_us);
    let at_socket = spread(&stats.at_socket_us);
    let replies = load(&stats.replies);
    let error_codes = stats
        .error_codes
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let (error_frames, disconnects, timeouts, connect_failures) = (
        error_codes.values().sum(),
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
        send_late,
        at_socket,
        errors: error_frames + disconnects + timeouts + connect_failures,
        replies,
        warmup_replies: load(&stats.warmup_replies),
        escalations: load(&stats.escalations),
        error_frames,
        error_codes,
        disconnects,
        timeouts,
        connect_failures,
        unsent: load(&stats.unsent),
        resumed: load(&stats.resumed),
        resent: load(&stats.resent),
        resent_stored: load(&stats.resent_stored),
        connected,
        connect_secs,
        elapsed_secs,
        warmup_secs,
        first_failure: stats.first_failure.lock().ok().and_then(|f| f.clone()),
    }
}

/// One visitor's part of a run.
struct VisitorRun {
    index: usize,
    target: Arc<Target>,
    plan: Arc<Plan>,
    stats: Arc<Stats>,
    hooks: Hooks,
    /// Open loop: wakes the visitor for its slots.
    pacer: Option<Pacer>,
    start: Instant,
    /// The end of the warm-up.
    measured_from: Instant,
    deadline: Instant,
}

impl VisitorRun {
    /// Past the duration, or stopped: nothing more is sent.
    fn over(&self) -> bool {
        Instant::now() >= self.deadline || self.hooks.stop.is_set()
    }

    async fn drive(self, mut conn: Option<Visitor>) {
        let mut seq: u64 = 0;
        let mut slot: u64 = 0;
        // After a lost connection: the conversation to resume, and its message
        // that was sent but not acknowledged, to send again with the same id.
        let mut resume: Option<Conversation> = None;
        let mut unacked: Option<(String, Cow<'static, str>)> = None;
        let mut failed_connects: u32 = 0;
        if let Some(v) = &mut conn {
            v.log_acks(self.hooks.acks.clone());
        }
        loop {
            if self.stats.budget_spent() && unacked.is_none() {
                return;
            }
            // When this message should go out, and what its latency counts from.
            let intended = match self.plan.pacing {
                Pacing::Closed { .. } => None,
                Pacing::Open { rate } => {
                    let at = self.start + self.slot_offset(rate, slot);
                    slot += 1;
                    if at >= self.deadline || self.hooks.stop.is_set() {
                        return;
                    }
                    let now = Instant::now();
                    if now >= self.deadline {
                        self.count_unsent(rate, at);
                        return;
                    }
                    // Ready before its slot: how late the send is, is the
                    // generator's own lateness.
                    let waits = now < at;
                    match &self.pacer {
                        Some(pacer) => self.hooks.stop.pace_until(pacer, at).await,
                        None => self.hooks.stop.sleep_until(at).await,
                    }
                    Some((at, waits))
                }
            };
            if self.over() {
                return;
            }
            let visitor = match &mut conn {
                Some(v) => v,
                None => match self.reconnect(resume.as_ref(), &mut failed_connects).await {
                    Some(v) => {
                        let same = resume.as_ref().is_some_and(|c| c.id == v.conversation().id);
                        if same {
                            self.stats.resumed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // A new conversation: what the old one lost stays lost.
                            unacked = None;
                        }
                        if v.handed_off() {
                            // It escalated and the reply was lost: start anew, as
                            // after an escalation.
                            resume = None;
                            unacked = None;
                            continue;
                        }
                        conn.insert(v)
                    }
                    None => continue,
                },
            };
            let (id, text) = match unacked.take() {
                Some(message) => {
                    self.stats.resent.fetch_add(1, Ordering::Relaxed);
                    message
                }
                None => {
                    if !self.stats.take_message() {
                        return;
                    }
                    let message = (format!("v{}-{seq}", self.index), self.text(seq));
                    seq += 1;
                    message
                }
            };
            let sent = Instant::now();
            if let Some((at, true)) = intended {
                self.stats.record_send(at, sent, self.measured_from);
            }
            let from = intended.map_or(sent, |(at, _)| at);
            match visitor.ask(&id, &text, sent + self.plan.timeout).await {
                Ok(Replied::Stored) => {
                    self.stats.resent_stored.fetch_add(1, Ordering::Relaxed);
                }
                Ok(replied) => {
                    let now = Instant::now();
                    let arrived = visitor.received().map(|stamp| {
                        Instant::from_std(frontdesk::rxstamp::instant_of(stamp, now.into_std()))
                    });
                    self.stats
                        .record_reply(from, now, arrived, self.measured_from);
                    if replied == Replied::Escalated {
                        self.stats.escalations.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                        resume = None;
                    }
                }
                Err(failure) => {
                    self.stats.record_failure(&failure);
                    if !matches!(failure, Failure::ErrorFrame(_)) {
                        if !visitor.acked() {
                            unacked = Some((id, text));
                        }
                        resume = Some(visitor.conversation().clone());
                        conn = None;
                    }
                }
            }
            if let Pacing::Closed { think } = self.plan.pacing {
                if !think.is_zero() {
                    let until = (Instant::now() + think).min(self.deadline);
                    self.hooks.stop.sleep_until(until).await;
                }
            }
        }
    }

    /// What this visitor says as its `seq`-th message.
    fn text(&self, seq: u64) -> Cow<'static, str> {
        let every = self.plan.escalate_every;
        let text = if every > 0 && (seq + 1).is_multiple_of(every) {
            wire::HANDOFF_REQUEST
        } else {
            wire::question(self.index, seq)
        };
        if self.plan.vary_case {
            Cow::Owned(wire::vary_case(text, self.index, seq))
        } else {
            Cow::Borrowed(text)
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
        let left = (self.deadline - first_due.max(self.measured_from)).as_secs_f64();
        let unsent = (left / interval).ceil() as u64;
        self.stats.unsent.fetch_add(unsent, Ordering::Relaxed);
    }

    /// A new connection, resuming `resume` if given (else a new conversation),
    /// or `None` (counted) after a pause that grows with each failure in a row.
    async fn reconnect(
        &self,
        resume: Option<&Conversation>,
        failures: &mut u32,
    ) -> Option<Visitor> {
        let deadline = (Instant::now() + self.plan.timeout).min(self.deadline);
        let source = self.plan.source(self.index);
        match Visitor::start(&self.target, source, deadline, resume).await {
            Ok(mut v) => {
                *failures = 0;
                v.log_acks(self.hooks.acks.clone());
                Some(v)
            }
            Err(failure) => {
                // Running out of time while connecting at the very end is not the server's fault.
                if !self.over() {
                    self.stats.record_failure(&failure);
                    *failures += 1;
                    let pause = backoff(*failures, self.index);
                    let until = (Instant::now() + pause).min(self.deadline);
                    self.hooks.stop.sleep_until(until).await;
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
            warmup: Duration::ZERO,
            pacing,
            count: None,
            timeout: Duration::from_secs(5),
            sources: Vec::new(),
            connect_concurrency: 2,
            escalate_every: 0,
            vary_case: false,
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
        assert_eq!(f.send_late, None, "nothing is scheduled in the closed loop");
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
        let late = f
            .send_late
            .expect("the generator's own lateness is measured");
        assert!(
            late.p50_ms <= late.p99_ms && late.p99_ms <= late.max_ms,
            "{late:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_warm_up_runs_the_same_load_before_the_measured_duration() {
        let (target, server) = echo_target().await;
        let plan = Plan {
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(300),
            ..plan(4, Pacing::Open { rate: 200.0 })
        };
        let f = run(&target, &plan).await;
        // 160 slots 5 ms apart before 800 ms: 60 in the warm-up. A reply to the
        // last of those may arrive after it, and then counts towards throughput.
        assert_eq!(f.warmup_replies + f.replies, 160, "{f:?}");
        assert!((100..=104).contains(&f.replies), "{f:?}");
        assert_eq!((f.unsent, f.errors), (0, 0), "{f:?}");
        assert!(
            f.elapsed_secs < 0.79 && f.warmup_secs == 0.3,
            "timed from the end of the warm-up: {f:?}"
        );
        server.abort();
    }

    #[test]
    fn a_replys_arrival_at_the_socket_is_recorded_within_its_round_trip() {
        let stats = Stats::new(None);
        let measured_from = Instant::now();
        let from = measured_from + Duration::from_millis(1);
        let read = from + Duration::from_millis(9);
        stats.record_reply(
            from,
            read,
            Some(from + Duration::from_millis(4)),
            measured_from,
        );
        // A stamp from another clock's drift is kept within the round trip.
        stats.record_reply(
            from,
            read,
            Some(read + Duration::from_millis(2)),
            measured_from,
        );
        stats.record_reply(from, read, None, measured_from);
        let h = stats.at_socket_us.lock().unwrap();
        assert_eq!(h.len(), 2, "only replies with a stamp");
        assert!(h.equivalent(h.min(), 4_000), "{}", h.min());
        assert!(h.equivalent(h.max(), 9_000), "{}", h.max());
        assert_eq!(stats.latency_us.lock().unwrap().len(), 3);
    }

    #[test]
    fn the_generators_lateness_is_recorded_for_measured_sends_only() {
        let stats = Stats::new(None);
        let measured_from = Instant::now();
        let recorded = |s: &Stats| s.send_late_us.lock().unwrap().len();
        let before = measured_from - Duration::from_millis(20);
        stats.record_send(before, before + Duration::from_millis(3), measured_from);
        assert_eq!(recorded(&stats), 0, "due during the warm-up");
        let due = measured_from + Duration::from_millis(5);
        stats.record_send(due, due + Duration::from_micros(700), measured_from);
        let h = stats.send_late_us.lock().unwrap();
        assert_eq!(h.len(), 1);
        assert!(h.equivalent(h.max(), 700), "{}", h.max());
    }

    #[test]
    fn only_messages_sent_after_the_warm_up_have_their_latency_recorded() {
        let stats = Stats::new(None);
        let measured_from = Instant::now();
        let before = measured_from - Duration::from_millis(20);
        let after = measured_from + Duration::from_millis(5);
        let recorded = |s: &Stats| s.latency_us.lock().unwrap().len();
        // Sent and answered during the warm-up: neither counted nor timed.
        stats.record_reply(
            before,
            before + Duration::from_millis(1),
            None,
            measured_from,
        );
        assert_eq!(stats.warmup_replies.load(Ordering::Relaxed), 1);
        assert_eq!(
            (stats.replies.load(Ordering::Relaxed), recorded(&stats)),
            (0, 0)
        );
        // Sent during it, answered after: counted (throughput), not timed.
        stats.record_reply(before, after, None, measured_from);
        assert_eq!(
            (stats.replies.load(Ordering::Relaxed), recorded(&stats)),
            (1, 0)
        );
        // Sent after it: counted and timed.
        stats.record_reply(after, after + Duration::from_millis(3), None, measured_from);
        assert_eq!(
            (stats.replies.load(Ordering::Relaxed), recorded(&stats)),
            (2, 1)
        );
        let h = stats.latency_us.lock().unwrap();
        assert!((2_900..=3_100).contains(&h.max()), "{}", h.max());
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
            hooks: Hooks::default(),
            pacer: None,
            start: Instant::now(),
            measured_from: Instant::now(),
            deadline: Instant::now(),
        };
        assert_eq!(run.slot_offset(100.0, 0), Duration::from_millis(10));
        assert_eq!(run.slot_offset(100.0, 1), Duration::from_millis(50));
    }

    #[test]
    fn every_nth_message_asks_for_a_person_when_asked_to() {
        let visitor = |escalate_every| VisitorRun {
            index: 2,
            target: Arc::new(Target {
                url: String::new(),
                addr: ([127, 0, 0, 1], 1).into(),
            }),
            plan: Arc::new(Plan {
                escalate_every,
                ..plan(4, CLOSED)
            }),
            stats: Arc::new(Stats::new(None)),
            hooks: Hooks::default(),
            pacer: None,
            start: Instant::now(),
            measured_from: Instant::now(),
            deadline: Instant::now(),
        };
        let never = visitor(0);
        assert!((0..100).all(|seq| never.text(seq) == wire::question(2, seq)));
        let third = visitor(3);
        let asks: Vec<u64> = (0..9)
            .filter(|&seq| third.text(seq) == wire::HANDOFF_REQUEST)
            .collect();
        assert_eq!(asks, [2, 5, 8]);
        assert_eq!(third.text(0), wire::question(2, 0));
    }

    #[test]
    fn the_budget_runs_out() {
        let stats = Stats::new(Some(2));
        assert!(stats.take_message() && stats.take_message());
        assert!(!stats.take_message());
        assert!(stats.budget_spent());
        assert!(Stats::new(None).take_message());
    }

    #[test]
    fn reconnects_back_off_up_to_two_seconds() {
        assert_eq!(backoff(1, 0), Duration::from_millis(100));
        assert_eq!(backoff(2, 0), Duration::from_millis(200));
        assert_eq!(backoff(5, 0), Duration::from_millis(1600));
        assert_eq!(backoff(6, 0), Duration::from_secs(2));
        assert_eq!(backoff(u32::MAX, 0), Duration::from_secs(2));
        // Visitors spread out by up to 7/32 of the pause.
        assert_eq!(backoff(1, 7), Duration::from_micros(121_875));
        assert_eq!(backoff(1, 8), backoff(1, 0));
    }

    #[tokio::test]
    async fn a_stop_ends_the_run_early_and_keeps_the_figures() {
        let (target, server) = echo_target().await;
        let plan = Plan {
            duration: Duration::from_secs(30),
            pacing: Pacing::Closed {
                think: Duration::from_millis(5),
            },
            ..plan(2, CLOSED)
        };
        let hooks = Hooks::default();
        let stop = hooks.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.trigger();
        });
        let f = run_with(&target, &plan, hooks).await;
        assert!(f.elapsed_secs < 5.0, "{f:?}");
        assert!(f.replies > 0 && f.errors == 0, "{f:?}");
        server.abort();
    }

    /// A server speaking just enough of the visitor wire to lose connections
    /// the way a killed frontdesk does: it resumes a conversation given its
    /// id and token (`t_` + id), keeps message ids per conversation (a known
    /// id gets an ack and no reply, as frontdesk answers a resent message),
    /// and drops the first `drops` connections on their first message, after
    /// storing it if `store_before_drop` (killed after the commit, before the ack).
    /// With `queued`, a resumed conversation comes back in the queue.
    #[derive(Default)]
    struct Flaky {
        drops: usize,
        store_before_drop: bool,
        queued: bool,
        conversations: usize,
        stored: std::collections::HashMap<String, Vec<String>>,
        /// Every message id received, in order.
        received: Vec<String>,
    }

    async fn flaky_server(state: Flaky) -> (Target, Arc<Mutex<Flaky>>) {
        use futures_util::SinkExt;
        use serde_json::{json, Value};
        use tokio_tungstenite::tungstenite::Message;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    let mut conversation = String::new();
                    while let Some(Ok(Message::Text(text))) = ws.next().await {
                        let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                        let out: Vec<Value> = {
                            let mut s = state.lock().unwrap();
                            if frame["type"] == "hello" {
                                let asked = frame["conversation_id"].as_str().unwrap_or("");
                                let token = frame["resume_token"].as_str().unwrap_or("");
                                let resumed =
                                    s.stored.contains_key(asked) && token == format!("t_{asked}");
                                if resumed {
                                    conversation = asked.to_string();
                                } else {
                                    s.conversations += 1;
                                    conversation = format!("c_{}", s.conversations);
                                    s.stored.insert(conversation.clone(), Vec::new());
                                }
                                let history: Vec<Value> = s.stored[&conversation]
                                    .iter()
                                    .map(|id| json!({"role": "visitor", "text": "?", "at": 1, "id": id}))
                                    .collect();
                                let state = if resumed && s.queued { "queued" } else { "bot" };
                                vec![json!({"type": "welcome", "conversation_id": conversation,
                                    "resume_token": format!("t_{conversation}"), "state": state,
                                    "history": history})]
                            } else {
                                let id = frame["id"].as_str().unwrap().to_string();
                                s.received.push(id.clone());
                                let known = s.stored[&conversation].contains(&id);
                                if s.drops > 0 {
                                    s.drops -= 1;
                                    if s.store_before_drop {
                                        s.stored.get_mut(&conversation).unwrap().push(id);
                                    }
                                    return;
                                }
                                if known {
                                    vec![json!({"type": "ack", "id": id})]
                                } else {
                                    s.stored.get_mut(&conversation).unwrap().push(id.clone());
                                    vec![
                                        json!({"type": "ack", "id": id}),
                                        json!({"type": "reply", "answer_id": "a", "kind": "answer",
                                            "text": "ok", "quick_replies": []}),
                                    ]
                                }
                            }
                        };
                        for frame in out {
                            if ws
                                .send(Message::Text(frame.to_string().into()))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let target = Target {
            url: format!("ws://{addr}/ws"),
            addr,
        };
        (target, state)
    }

    async fn run_against_flaky(state: Flaky, count: u64) -> (Figures, Flaky, String) {
        let (target, state) = flaky_server(state).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.tsv");
        let hooks = Hooks {
            acks: Some(Arc::new(AckLog::create(&path).unwrap())),
            ..Hooks::default()
        };
        let plan = Plan {
            count: Some(count),
            ..plan(1, CLOSED)
        };
        let f = run_with(&target, &plan, hooks).await;
        let state = std::mem::take(&mut *state.lock().unwrap());
        (f, state, std::fs::read_to_string(&path).unwrap())
    }

    #[tokio::test]
    async fn a_message_lost_with_the_connection_is_sent_again_in_the_resumed_conversation() {
        let flaky = Flaky {
            drops: 1,
            ..Flaky::default()
        };
        let (f, server, acks) = run_against_flaky(flaky, 3).await;
        assert_eq!(server.received, ["v0-0", "v0-0", "v0-1", "v0-2"]);
        assert_eq!(server.conversations, 1, "the conversation was resumed");
        assert_eq!(acks, "c_1\tv0-0\nc_1\tv0-1\nc_1\tv0-2\n");
        assert_eq!(
            (f.replies, f.resumed, f.resent, f.disconnects, f.errors),
            (3, 1, 1, 1, 1),
            "{f:?}"
        );
    }

    #[tokio::test]
    async fn a_message_stored_before_the_connection_was_lost_is_only_acknowledged_again() {
        let flaky = Flaky {
            drops: 1,
            store_before_drop: true,
            ..Flaky::default()
        };
        let (f, server, acks) = run_against_flaky(flaky, 2).await;
        assert_eq!(server.received, ["v0-0", "v0-0", "v0-1"]);
        assert_eq!(server.stored["c_1"], ["v0-0", "v0-1"]);
        assert_eq!(acks, "c_1\tv0-0\nc_1\tv0-1\n");
        // v0-0 was stored (with its reply, as frontdesk stores a turn) before
        // the drop, so only v0-1 gets a reply now, and nobody waits for a
        // reply that is not coming.
        assert_eq!(
            (f.replies, f.resumed, f.resent, f.resent_stored, f.timeouts),
            (1, 1, 1, 1, 0),
            "{f:?}"
        );
    }

    #[tokio::test]
    async fn a_conversation_that_reached_the_queue_meanwhile_is_not_continued() {
        let flaky = Flaky {
            drops: 1,
            queued: true,
            ..Flaky::default()
        };
        let (f, server, acks) = run_against_flaky(flaky, 2).await;
        // Messages to a queued conversation are acknowledged but never
        // answered, so the visitor starts a new conversation instead.
        assert_eq!(server.received, ["v0-0", "v0-1"]);
        assert_eq!(server.conversations, 2);
        assert_eq!(acks, "c_2\tv0-1\n");
        assert_eq!(
            (f.replies, f.resumed, f.resent, f.timeouts),
            (1, 1, 0, 0),
            "{f:?}"
        );
    }
}
