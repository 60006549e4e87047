//! Live counters of a running server, exposed in Prometheus' text format at
//! `/metrics`. Lock-free atomics on the hot paths; the exposition is written
//! by hand (a few families, one format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::engine::{EscalationReason, Kind};

const KINDS: [Kind; 4] = [Kind::Answer, Kind::Clarify, Kind::Fallback, Kind::Escalate];
const REASONS: [EscalationReason; 5] = [
    EscalationReason::Requested,
    EscalationReason::Sensitive,
    EscalationReason::RepeatedFallback,
    EscalationReason::NegativeFeedback,
    EscalationReason::IntentRule,
];
/// Outcomes counted when conversations close.
pub const OUTCOMES: [&str; 4] = ["deflected", "escalated", "unanswered", "no_question"];

/// Why the server turned a connection or a frame away, or cut a connection
/// off: the protections that act under load and against abuse, each counted
/// so that an operator sees them act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A websocket over `limits.max_connections` (HTTP 503).
    MaxConnections,
    /// A connection over `limits.max_connections_per_address`, closed as accepted.
    PerAddress,
    /// A connection over `limits.max_handshaking`, closed as accepted.
    Handshaking,
    /// A websocket from an origin not in `allowed_origins` (HTTP 403).
    Origin,
    /// A connection without a complete request within
    /// `limits.handshake_timeout_secs`, closed.
    HandshakeTimeout,
    /// A websocket whose client stopped reading what it was sent, closed.
    TooSlow,
    /// A visitor frame over `limits.frames_per_second`, answered `rate_limited`.
    RateLimited,
}

impl Rejection {
    const ALL: [Rejection; 7] = [
        Rejection::MaxConnections,
        Rejection::PerAddress,
        Rejection::Handshaking,
        Rejection::Origin,
        Rejection::HandshakeTimeout,
        Rejection::TooSlow,
        Rejection::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::MaxConnections => "max_connections",
            Rejection::PerAddress => "per_address",
            Rejection::Handshaking => "handshaking",
            Rejection::Origin => "origin",
            Rejection::HandshakeTimeout => "handshake_timeout",
            Rejection::TooSlow => "too_slow",
            Rejection::RateLimited => "rate_limited",
        }
    }

    /// The family it is counted in (an index into [`REJECTION_FAMILIES`]):
    /// connections refused before their websocket opened, connections closed
    /// on their client, or frames.
    fn family(self) -> usize {
        match self {
            Rejection::MaxConnections
            | Rejection::PerAddress
            | Rejection::Handshaking
            | Rejection::Origin => 0,
            Rejection::HandshakeTimeout | Rejection::TooSlow => 1,
            Rejection::RateLimited => 2,
        }
    }
}

/// The families [`Rejection`]s are counted in: name and help.
const REJECTION_FAMILIES: [(&str, &str); 3] = [
    (
        "frontdesk_connections_refused_total",
        "Connections turned away before their websocket opened, by reason.",
    ),
    (
        "frontdesk_connections_dropped_total",
        "Connections closed on their client: no complete request in time, or not reading what it is sent.",
    ),
    (
        "frontdesk_frames_refused_total",
        "Visitor frames refused unprocessed, by reason.",
    ),
];

/// The counts of [`Rejection`]s, shared with the listener, which refuses
/// connections before any request reaches the application.
#[derive(Default)]
pub struct Rejections {
    counts: [AtomicU64; Rejection::ALL.len()],
}

impl Rejections {
    pub fn count(&self, why: Rejection) {
        self.counts[why as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, why: Rejection) -> u64 {
        self.counts[why as usize].load(Relaxed)
    }

    fn write(&self, o: &mut String) {
        for (i, (family, help)) in REJECTION_FAMILIES.into_iter().enumerate() {
            header(o, family, "counter", help);
            for why in Rejection::ALL.into_iter().filter(|r| r.family() == i) {
                sample(o, family, "reason", why.as_str(), self.get(why));
            }
        }
    }
}

/// A histogram with fixed upper bounds (seconds for durations).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in microseconds.
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| seconds <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_us
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn write(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Everything `/metrics` reports that the server counts itself.
pub struct Metrics {
    visitor_messages: AtomicU64,
    agent_messages: AtomicU64,
    decisions: [AtomicU64; 4],
    /// Visitor messages decided again and given from the cache.
    remembered: [AtomicU64; 2],
    escalations: [AtomicU64; 5],
    closed: [AtomicU64; 4],
    pub decision_seconds: Histogram,
    /// From a visitor's frame reaching the server's socket (the kernel's
    /// receive stamp, or its reading where there is none) to the bot's reply
    /// written to it: the wait to be read, the decision, the wait for the
    /// store's group commit and its sync, and the sending.
    pub reply_seconds: Histogram,
    pub queue_wait_seconds: Histogram,
    queue_length: AtomicU64,
    queue_oldest_ms: AtomicU64,
    visitor_connections: AtomicI64,
    agent_connections: AtomicI64,
    rejections: std::sync::Arc<Rejections>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            visitor_messages: AtomicU64::new(0),
            agent_messages: AtomicU64::new(0),
            decisions: Default::default(),
            remembered: Default::default(),
            escalations: Default::default(),
            closed: Default::default(),
            decision_seconds: Histogram::new(&[
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                0.01, 0.025, 0.05, 0.1,
            ]),
            reply_seconds: Histogram::new(&[
                0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5,
            ]),
            queue_wait_seconds: Histogram::new(&[
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
            ]),
            queue_length: AtomicU64::new(0),
            queue_oldest_ms: AtomicU64::new(0),
            visitor_connections: AtomicI64::new(0),
            agent_connections: AtomicI64::new(0),
            rejections: Default::default(),
        }
    }
}

/// Values the metrics read from elsewhere at exposition time.
pub struct Gauges<'a> {
    /// The store's writer: its commits' durations and sizes.
    pub store: &'a crate::store::WriterStats,
    pub agents_online: usize,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub intents: usize,
    pub articles: usize,
    /// The process's own figures, where they could be read.
    pub process: Option<super::process::Process>,
}

impl Metrics {
    pub fn visitor_message(&self) {
        self.visitor_messages.fetch_add(1, Relaxed);
    }

    pub fn agent_message(&self) {
        self.agent_messages.fetch_add(1, Relaxed);
    }

    /// A decision made in `seconds`.
    pub fn decision(&self, kind: Kind, escalation: Option<EscalationReason>, seconds: f64) {
        if let Some(i) = KINDS.iter().position(|&k| k == kind) {
            self.decisions[i].fetch_add(1, Relaxed);
        }
        if let Some(i) = escalation.and_then(|r| REASONS.iter().position(|&x| x == r)) {
            self.escalations[i].fetch_add(1, Relaxed);
        }
        self.decision_seconds.observe(seconds);
    }

    /// A bot reply written `seconds` after the frame it answers arrived.
    pub fn reply_written(&self, seconds: f64) {
        self.reply_seconds.observe(seconds);
    }

    /// A visitor message's decision was remembered from an earlier one
    /// (`true`) or made afresh.
    pub fn decision_remembered(&self, remembered: bool) {
        self.remembered[usize::from(remembered)].fetch_add(1, Relaxed);
    }

    /// A conversation closed with this outcome.
    pub fn closed(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|&o| o == outcome) {
            self.closed[i].fetch_add(1, Relaxed);
        }
    }

    pub fn queue(&self, length: usize, oldest_wait_ms: i64) {
        self.queue_length.store(length as u64, Relaxed);
        self.queue_oldest_ms
            .store(oldest_wait_ms.max(0) as u64, Relaxed);
    }

    /// A connection or frame turned away, or a connection cut off.
    pub fn rejected(&self, why: Rejection) {
        self.rejections.count(why);
    }

    /// The rejections' counts, for the listener to count its own in.
    pub fn rejections(&self) -> std::sync::Arc<Rejections> {
        self.rejections.clone()
    }

    /// A websocket opened (+1) or closed (-1).
    pub fn connection(&self, agent: bool, delta: i64) {
        let g = if agent {
            &self.agent_connections
        } else {
            &self.visitor_connections
        };
        g.fetch_add(delta, Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self, g: &Gauges<'_>) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        header(
            o,
            "frontdesk_messages_total",
            "counter",
            "Messages stored, by who wrote them.",
        );
        sample(
            o,
            "frontdesk_messages_total",
            "role",
            "visitor",
            self.visitor_messages.load(Relaxed),
        );
        sample(
            o,
            "frontdesk_messages_total",
            "role",
            "agent",
            self.agent_messages.load(Relaxed),
        );
        header(
            o,
            "frontdesk_decisions_total",
            "counter",
            "Bot decisions, by kind.",
        );
        for (k, c) in KINDS.iter().zip(&self.decisions) {
            sample(
                o,
                "frontdesk_decisions_total",
                "kind",
                k.as_str(),
                c.load(Relaxed),
            );
        }
        header(
            o,
            "frontdesk_decision_cache_lookups_total",
            "counter",
            "Visitor messages looked up among the decisions remembered for repeated messages, by result.",
        );
        for (result, c) in ["miss", "hit"].iter().zip(&self.remembered) {
            sample(
                o,
                "frontdesk_decision_cache_lookups_total",
                "result",
                result,
                c.load(Relaxed),
            );
        }
        header(
            o,
            "frontdesk_escalations_total",
            "counter",
            "Escalations to a person, by reason.",
        );
        for (r, c) in REASONS.iter().zip(&self.escalations) {
            sample(
                o,
                "frontdesk_escalations_total",
                "reason",
                r.as_str(),
                c.load(Relaxed),
            );
        }
        header(
            o,
            "frontdesk_conversations_closed_total",
            "counter",
            "Conversations closed, by outcome (a reopened conversation counts again when it closes again).",
        );
        for (outcome, c) in OUTCOMES.iter().zip(&self.closed) {
            sample(
                o,
                "frontdesk_conversations_closed_total",
                "outcome",
                outcome,
                c.load(Relaxed),
            );
        }
        header(
            o,
            "frontdesk_decision_seconds",
            "histogram",
            "Time the engine took to decide on one message.",
        );
        self.decision_seconds.write(o, "frontdesk_decision_seconds");
        header(
            o,
            "frontdesk_reply_seconds",
            "histogram",
            "Time from a visitor's frame reaching the server's socket to the bot's reply written to it (the wait to be read, decision, group commit and sync, sending).",
        );
        self.reply_seconds.write(o, "frontdesk_reply_seconds");
        header(
            o,
            "frontdesk_queue_wait_seconds",
            "histogram",
            "Time conversations waited in the queue before an agent claimed them.",
        );
        self.queue_wait_seconds
            .write(o, "frontdesk_queue_wait_seconds");
        header(
            o,
            "frontdesk_store_commit_seconds",
            "histogram",
            "Time a group commit took, from its first statement to being on disk; replies wait for it.",
        );
        g.store
            .commit_seconds
            .write(o, "frontdesk_store_commit_seconds");
        header(
            o,
            "frontdesk_store_commit_jobs",
            "histogram",
            "Writes (mostly turns) stored together in one group commit.",
        );
        g.store.group_jobs.write(o, "frontdesk_store_commit_jobs");
        header(
            o,
            "frontdesk_store_wal_restart_seconds",
            "histogram",
            "Time each restart of the write-ahead log held commits back.",
        );
        g.store
            .wal_restart_seconds
            .write(o, "frontdesk_store_wal_restart_seconds");
        header(
            o,
            "frontdesk_queue_length",
            "gauge",
            "Conversations waiting for a person.",
        );
        let _ = writeln!(
            o,
            "frontdesk_queue_length {}",
            self.queue_length.load(Relaxed)
        );
        header(
            o,
            "frontdesk_queue_oldest_wait_seconds",
            "gauge",
            "How long the longest-waiting conversation has waited.",
        );
        let _ = writeln!(
            o,
            "frontdesk_queue_oldest_wait_seconds {}",
            self.queue_oldest_ms.load(Relaxed) as f64 / 1000.0
        );
        header(
            o,
            "frontdesk_websocket_connections",
            "gauge",
            "Open websocket connections.",
        );
        for (kind, v) in [
            ("visitor", self.visitor_connections.load(Relaxed)),
            ("agent", self.agent_connections.load(Relaxed)),
        ] {
            let _ = writeln!(o, "frontdesk_websocket_connections{{kind=\"{kind}\"}} {v}");
        }
        self.rejections.write(o);
        header(
            o,
            "frontdesk_agents_online",
            "gauge",
            "Agents signed in to the console.",
        );
        let _ = writeln!(o, "frontdesk_agents_online {}", g.agents_online);
        header(
            o,
            "frontdesk_content_reloads_total",
            "counter",
            "Live content reloads, by result.",
        );
        sample(
            o,
            "frontdesk_content_reloads_total",
            "result",
            "ok",
            g.reloads_ok,
        );
        sample(
            o,
            "frontdesk_content_reloads_total",
            "result",
            "error",
            g.reloads_failed,
        );
        header(
            o,
            "frontdesk_content_intents",
            "gauge",
            "Intents in the content being served.",
        );
        let _ = writeln!(o, "frontdesk_content_intents {}", g.intents);
        header(
            o,
            "frontdesk_content_articles",
            "gauge",
            "Knowledge-base articles in the content being served.",
        );
        let _ = writeln!(o, "frontdesk_content_articles {}", g.articles);
        if let Some(process) = &g.process {
            process.write(o);
        }
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample with one label; label values here are fixed identifiers.
fn sample(out: &mut String, name: &str, label: &str, value: &str, n: u64) {
    let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(0.0005);
        h.observe(0.005);
        h.observe(0.5);
        let mut out = String::new();
        h.write(&mut out, "x");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn every_rejection_is_written_in_its_family() {
        let r = Rejections::default();
        for (n, why) in Rejection::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                r.count(why);
            }
        }
        let mut out = String::new();
        r.write(&mut out);
        for (n, why) in Rejection::ALL.into_iter().enumerate() {
            let line = format!(
                "{}{{reason=\"{}\"}} {}\n",
                REJECTION_FAMILIES[why.family()].0,
                why.as_str(),
                n + 1
            );
            assert!(out.contains(&line), "{line} in {out}");
        }
        assert_eq!(out.matches("# TYPE").count(), 3, "{out}");
    }
}
