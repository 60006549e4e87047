//! Printing results: a table for people, or exactly one JSON object with
//! `--json`. Ratios are frontdesk's figure divided by the echo server's:
//! below 1 for throughput and above 1 for latency mean frontdesk is slower.

use serde_json::{json, Value};

use crate::idle::IdleFigures;
use crate::load::{Figures, Spread};

/// A load run's results.
pub struct Report<'a> {
    /// One line describing the run (visitors, pacing, duration, URL).
    pub title: String,
    pub frontdesk: &'a Figures,
    pub echo: Option<&'a Figures>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

fn spread_json(s: Spread) -> Value {
    json!({
        "p50_ms": round(s.p50_ms, 3),
        "p99_ms": round(s.p99_ms, 3),
        "max_ms": round(s.max_ms, 3),
    })
}

fn figures_json(f: &Figures) -> Value {
    json!({
        "msgs_per_s": round(f.msgs_per_s, 1),
        "p50_ms": round(f.p50_ms, 3),
        "p90_ms": round(f.p90_ms, 3),
        "p99_ms": round(f.p99_ms, 3),
        "max_ms": round(f.max_ms, 3),
        "send_late": f.send_late.map(spread_json),
        "at_socket": f.at_socket.map(spread_json),
        "errors": f.errors,
        "replies": f.replies,
        "escalations": f.escalations,
        "error_detail": {
            "error_frames": f.error_frames,
            "error_codes": f.error_codes,
            "disconnects": f.disconnects,
            "timeouts": f.timeouts,
            "connect_failures": f.connect_failures,
        },
        "unsent": f.unsent,
        "resumed": f.resumed,
        "resent": f.resent,
        "resent_stored": f.resent_stored,
        "connected": f.connected,
        "connect_s": round(f.connect_secs, 3),
        "elapsed_s": round(f.elapsed_secs, 3),
        "warmup_s": round(f.warmup_secs, 3),
        "warmup_replies": f.warmup_replies,
    })
}

impl Report<'_> {
    pub fn json(&self) -> Value {
        let echo = self.echo.map(figures_json).unwrap_or(Value::Null);
        let ratios = self
            .echo
            .map(|e| {
                let r = |a, b| ratio(a, b).map(|x| round(x, 3));
                json!({
                    "msgs_per_s": r(self.frontdesk.msgs_per_s, e.msgs_per_s),
                    "p50_ms": r(self.frontdesk.p50_ms, e.p50_ms),
                    "p99_ms": r(self.frontdesk.p99_ms, e.p99_ms),
                })
            })
            .unwrap_or(Value::Null);
        json!({
            "frontdesk": figures_json(self.frontdesk),
            "echo": echo,
            "ratio": ratios,
        })
    }

    pub fn text(&self) -> String {
        let mut out = format!("{}\n", self.title);
        out.push_str(&format!(
            "{:<10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
            "", "msgs/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
        ));
        let row = |name: &str, f: &Figures| {
            format!(
                "{name:<10} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}\n",
                f.msgs_per_s, f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms, f.errors
            )
        };
        out.push_str(&row("frontdesk", self.frontdesk));
        if let Some(e) = self.echo {
            out.push_str(&row("echo", e));
            let cell = |a: f64, b: f64| {
                ratio(a, b).map_or_else(|| "-".to_string(), |x| format!("{x:.2}x"))
            };
            let f = self.frontdesk;
            out.push_str(&format!(
                "{:<10} {:>10} {:>9} {:>9} {:>9} {:>9}\n",
                "ratio",
                cell(f.msgs_per_s, e.msgs_per_s),
                cell(f.p50_ms, e.p50_ms),
                cell(f.p90_ms, e.p90_ms),
                cell(f.p99_ms, e.p99_ms),
                cell(f.max_ms, e.max_ms),
            ));
        }
        out.push('\n');
        out.push_str(&detail("frontdesk", self.frontdesk));
        if let Some(e) = self.echo {
            out.push_str(&detail("echo", e));
        }
        out
    }
}

fn detail(name: &str, f: &Figures) -> String {
    let mut s = format!(
        "{name}: {} replies in {:.2} s; {} visitors connected in {:.2} s; {} escalations (new conversation started)\n",
        f.replies, f.elapsed_secs, f.connected, f.connect_secs, f.escalations
    );
    if f.warmup_secs > 0.0 {
        s.push_str(&format!(
            "  warm-up: {} replies in the {:.2} s before, not measured\n",
            f.warmup_replies, f.warmup_secs
        ));
    }
    if let Some(a) = f.at_socket {
        s.push_str(&format!(
            "  latency to the reply's arrival at the socket (before the generator read it): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            a.p50_ms, a.p99_ms, a.max_ms
        ));
    }
    if let Some(l) = f.send_late {
        s.push_str(&format!(
            "  sent late by the generator (visitors ready for their slot): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            l.p50_ms, l.p99_ms, l.max_ms
        ));
    }
    s.push_str(&format!("  errors: {} error frames", f.error_frames));
    if !f.error_codes.is_empty() {
        let codes: Vec<String> = f
            .error_codes
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        s.push_str(&format!(" ({})", codes.join(", ")));
    }
    s.push_str(&format!(
        ", {} disconnects, {} timeouts, {} failed connections",
        f.disconnects, f.timeouts, f.connect_failures
    ));
    if f.unsent > 0 {
        s.push_str(&format!(
            "; {} sends still due at the end (visitors behind schedule)",
            f.unsent
        ));
    }
    s.push('\n');
    if f.error_codes.contains_key("rate_limited") {
        s.push_str(
            "  rate_limited: the server refused frames over its limit for one connection \
             ([limits] frames_per_second in its configuration; 0 turns it off for a load test)\n",
        );
    }
    if f.resumed > 0 {
        s.push_str(&format!(
            "  reconnects: {} conversations resumed, {} unacknowledged messages sent again \
             ({} of them already stored)\n",
            f.resumed, f.resent, f.resent_stored
        ));
    }
    if let Some(first) = &f.first_failure {
        s.push_str(&format!("  first failure: {first}\n"));
    }
    s
}

/// An idle run's results.
pub fn idle_json(f: &IdleFigures) -> Value {
    let rss = f.rss.map(|r| {
        json!({
            "before_kib": r.before_kib,
            "holding_kib": r.holding_kib,
            "per_connection_kib": r.per_connection_kib(f.connected).map(|x| round(x, 2)),
        })
    });
    json!({
        "idle": {
            "visitors": f.visitors,
            "connected": f.connected,
            "failed": f.failed,
            "held": f.held,
            "connect_s": round(f.connect_secs, 3),
            "hold_s": round(f.hold_secs, 3),
            "server_rss": rss,
        }
    })
}

pub fn idle_text(f: &IdleFigures) -> String {
    let mut s = format!(
        "held {} of {} connections for {:.1} s ({} connected in {:.2} s, {} failed, {} closed by the server)\n",
        f.held,
        f.visitors,
        f.hold_secs,
        f.connected,
        f.connect_secs,
        f.failed,
        f.connected - f.held
    );
    if let Some(first) = &f.first_failure {
        s.push_str(&format!("first failure: {first}\n"));
    }
    if let Some(r) = f.rss {
        let mib = |kib: u64| kib as f64 / 1024.0;
        s.push_str(&format!(
            "server VmRSS: {:.1} MiB before, {:.1} MiB holding",
            mib(r.before_kib),
            mib(r.holding_kib)
        ));
        if let Some(per) = r.per_connection_kib(f.connected) {
            s.push_str(&format!(" ({per:.1} KiB per connection)"));
        }
        s.push('\n');
    }
    s
}
