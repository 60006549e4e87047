//! `--idle`: open N visitor connections, start a conversation on each, then
//! hold them all quiet for the duration, to measure what an idle visitor costs
//! the server. With `--server-pid` the server's resident memory (VmRSS in
//! /proc/PID/status) is read before connecting and while all are held.

use std::time::Duration;

use tokio::time::Instant;

use crate::load::{connect_all, Plan};
use crate::sys;
use crate::visitor::Target;

/// What an idle run found.
#[derive(Debug, Clone, Default)]
pub struct IdleFigures {
    pub visitors: usize,
    /// Connected with a conversation started.
    pub connected: usize,
    pub failed: usize,
    /// Still open when the hold ended.
    pub held: usize,
    pub connect_secs: f64,
    pub hold_secs: f64,
    pub first_failure: Option<String>,
    pub rss: Option<Rss>,
}

/// The server's resident memory, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    pub before_kib: u64,
    /// Read once every visitor had connected and settled.
    pub holding_kib: u64,
}

impl Rss {
    /// KiB of server memory per connection held.
    pub fn per_connection_kib(&self, connections: usize) -> Option<f64> {
        (connections > 0)
            .then(|| (self.holding_kib as f64 - self.before_kib as f64) / connections as f64)
    }
}

/// Time given to the server to finish with the last connections before its memory is read.
const SETTLE: Duration = Duration::from_secs(1);

/// Connects, holds for `plan.duration`, and closes.
pub async fn run(target: &Target, plan: &Plan, server_pid: Option<u32>) -> IdleFigures {
    let rss_now = |pid: u32| match sys::vm_rss_kib(pid) {
        Ok(kib) => Some(kib),
        Err(e) => {
            eprintln!("frontdesk-load: cannot read the server's memory: {e}");
            None
        }
    };
    let before = server_pid.and_then(rss_now);

    let began = Instant::now();
    let mut failed = 0;
    let mut first_failure = None;
    let visitors = connect_all(target, plan, |f| {
        failed += 1;
        first_failure.get_or_insert_with(|| f.to_string());
    })
    .await;
    let connect_secs = began.elapsed().as_secs_f64();
    let connected = visitors.iter().filter(|v| v.is_some()).count();
    eprintln!(
        "frontdesk-load: {connected} of {} visitors connected in {connect_secs:.1} s; holding for {:.0} s",
        plan.visitors,
        plan.duration.as_secs_f64()
    );

    let hold_start = Instant::now();
    let deadline = hold_start + plan.duration;
    let holds: Vec<_> = visitors
        .into_iter()
        .flatten()
        .map(|v| tokio::spawn(v.hold(deadline)))
        .collect();

    let mut rss = None;
    if let (Some(pid), Some(before)) = (server_pid, before) {
        tokio::time::sleep_until((hold_start + SETTLE).min(deadline)).await;
        rss = rss_now(pid).map(|holding| Rss {
            before_kib: before,
            holding_kib: holding,
        });
    }

    let mut held = 0;
    for hold in holds {
        if matches!(hold.await, Ok(true)) {
            held += 1;
        }
    }
    IdleFigures {
        visitors: plan.visitors,
        connected,
        failed,
        held,
        connect_secs,
        hold_secs: hold_start.elapsed().as_secs_f64(),
        first_failure,
        rss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Pacing;

    #[tokio::test]
    async fn holds_every_connection_for_the_duration() {
        let (target, server) = crate::echo::spawn_for_test().await;
        let plan = Plan {
            visitors: 5,
            duration: Duration::from_millis(200),
            warmup: Duration::ZERO,
            pacing: Pacing::Closed {
                think: Duration::ZERO,
            },
            count: None,
            timeout: Duration::from_secs(5),
            sources: Vec::new(),
            connect_concurrency: 5,
            escalate_every: 0,
            vary_case: false,
        };
        let f = run(&target, &plan, Some(std::process::id())).await;
        assert_eq!((f.connected, f.held, f.failed), (5, 5, 0), "{f:?}");
        assert!(f.rss.is_some_and(|r| r.before_kib > 0 && r.holding_kib > 0));
        server.abort();
    }
}
