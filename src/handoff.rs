//! Who is connected, and relaying between them: visitors' sessions by
//! conversation, agents' sessions by name, queue positions last told to each
//! visitor, and the throttle on failed agent sign-ins. Everything durable is
//! in the store; this is only presence, rebuilt as people reconnect.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

use crate::protocol::agent::AgentServerFrame;
use crate::protocol::ServerFrame;

/// Something for one visitor's session.
#[derive(Debug, Clone)]
pub enum VisitorEvent {
    /// A frame to send to the visitor. Boxed: every visitor's channel holds
    /// a block of these, and most frames are much larger than a pointer.
    Frame(Box<ServerFrame>),
    /// The conversation's state changed: "queued", "with_agent" or "closed".
    State(&'static str),
}

impl VisitorEvent {
    /// A frame to send to the visitor.
    pub fn frame(frame: ServerFrame) -> VisitorEvent {
        VisitorEvent::Frame(Box::new(frame))
    }
}

type AgentTx = mpsc::Sender<Arc<str>>;
type VisitorTx = mpsc::Sender<VisitorEvent>;

/// Presence and relay between visitors and agents on this node.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
    queue_changed: Notify,
    /// Held while the offline tickets are read and sent to the agents
    /// ([`Hub::tickets_turn`]).
    tickets: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct HubState {
    visitors: HashMap<String, Vec<(u64, VisitorTx)>>,
    agents: BTreeMap<String, Vec<(u64, AgentTx)>>,
    /// The queue position and estimate last sent to each queued conversation.
    positions: HashMap<String, (u32, Option<u32>)>,
}

impl Hub {
    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().expect("hub lock")
    }

    /// A visitor's session attached to a conversation.
    pub fn join_visitor(&self, conversation_id: &str, conn: u64, tx: VisitorTx) {
        let mut s = self.state();
        s.visitors
            .entry(conversation_id.to_string())
            .or_default()
            .push((conn, tx));
        // A new session has not been told its position yet.
        s.positions.remove(conversation_id);
    }

    pub fn leave_visitor(&self, conversation_id: &str, conn: u64) {
        let mut s = self.state();
        if let Some(v) = s.visitors.get_mut(conversation_id) {
            v.retain(|(c, _)| *c != conn);
            if v.is_empty() {
                s.visitors.remove(conversation_id);
            }
        }
    }

    /// Sends to every session of a conversation. A session too slow to take
    /// it will notice its own backlog and close.
    pub fn to_visitor(&self, conversation_id: &str, event: VisitorEvent) {
        let s = self.state();
        if let Some(sessions) = s.visitors.get(conversation_id) {
            for (_, tx) in sessions {
                let _ = tx.try_send(event.clone());
            }
        }
    }

    /// An agent's session signed in. Returns whether the agent was offline before.
    pub fn join_agent(&self, name: &str, conn: u64, tx: AgentTx) -> bool {
        let mut s = self.state();
        let sessions = s.agents.entry(name.to_string()).or_default();
        sessions.push((conn, tx));
        sessions.len() == 1
    }

    /// Returns whether the agent is now offline.
    pub fn leave_agent(&self, name: &str, conn: u64) -> bool {
        let mut s = self.state();
        let Some(sessions) = s.agents.get_mut(name) else {
            return false;
        };
        sessions.retain(|(c, _)| *c != conn);
        if sessions.is_empty() {
            s.agents.remove(name);
            true
        } else {
            false
        }
    }

    /// Names of the agents signed in.
    pub fn online(&self) -> Vec<String> {
        self.state().agents.keys().cloned().collect()
    }

    pub fn any_agent_online(&self) -> bool {
        !self.state().agents.is_empty()
    }

    /// A turn to read the offline tickets and send them to the agents, held
    /// until they are sent. Taken in turns, the lists reach the agents in
    /// the order they were read, so a list read before a change never
    /// arrives after one read after it.
    pub async fn tickets_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.tickets.lock().await
    }

    /// Sends a frame to every agent session.
    pub fn to_agents(&self, frame: &AgentServerFrame) {
        let json: Arc<str> = frame.to_json().into();
        for sessions in self.state().agents.values() {
            for (_, tx) in sessions {
                let _ = tx.try_send(json.clone());
            }
        }
    }

    /// Sends a frame to every session of one agent.
    pub fn to_agent(&self, name: &str, frame: &AgentServerFrame) {
        let s = self.state();
        if let Some(sessions) = s.agents.get(name) {
            let json: Arc<str> = frame.to_json().into();
            for (_, tx) in sessions {
                let _ = tx.try_send(json.clone());
            }
        }
    }

    /// The queue changed: agents and queued visitors will be told, once for
    /// any number of changes in quick succession.
    pub fn queue_changed(&self) {
        self.queue_changed.notify_one();
    }

    /// Waits for the next [`Hub::queue_changed`].
    pub async fn next_queue_change(&self) {
        self.queue_changed.notified().await
    }

    /// Tells each connected, queued visitor its position when it changed.
    /// `queue` is the conversation ids in queue order.
    pub fn send_positions(&self, queue: &[String], eta_per_place_ms: Option<i64>) {
        let mut s = self.state();
        let HubState {
            visitors,
            positions,
            ..
        } = &mut *s;
        positions.retain(|id, _| queue.contains(id));
        for (i, id) in queue.iter().enumerate() {
            let Some(sessions) = visitors.get(id) else {
                continue;
            };
            let position = i as u32 + 1;
            let eta = eta_per_place_ms.map(|ms| ((ms * i64::from(position)) / 1000).max(1) as u32);
            if positions.get(id) == Some(&(position, eta)) {
                continue;
            }
            positions.insert(id.clone(), (position, eta));
            for (_, tx) in sessions {
                let _ = tx.try_send(VisitorEvent::frame(ServerFrame::Queue {
                    position,
                    eta_seconds: eta,
                }));
            }
        }
    }
}

/// Slows down and then refuses repeated failed sign-ins from one address.
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    window: Duration,
    max_failures: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            failures: Mutex::new(HashMap::new()),
            window: Duration::from_secs(600),
            max_failures: 10,
        }
    }
}

impl Throttle {
    /// How long to wait before judging an attempt from `ip`, or `None` when
    /// the address is refused for now.
    pub fn delay(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().expect("throttle lock");
        let n = match map.get(&ip) {
            Some(&(n, since)) if now.duration_since(since) < self.window => n,
            _ => 0,
        };
        if n >= self.max_failures {
            return None;
        }
        Some(match n {
            0..=2 => Duration::ZERO,
            n => Duration::from_millis(250u64 << (n - 3).min(4)),
        })
    }

    /// Counts a failed attempt.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().expect("throttle lock");
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, (_, since)| now.duration_since(*since) < window);
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// A good sign-in clears the address's record.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures.lock().expect("throttle lock").remove(&ip);
    }
}

/// A random secret of `bytes` bytes, as hex.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system provides randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Secrets are stored only as their SHA-256, as hex.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sign_ins_slow_down_then_refuse() {
        let t = Throttle::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let now = Instant::now();
        assert_eq!(t.delay(ip, now), Some(Duration::ZERO));
        for _ in 0..3 {
            t.failed(ip, now);
        }
        assert_eq!(t.delay(ip, now), Some(Duration::from_millis(250)));
        t.failed(ip, now);
        assert_eq!(t.delay(ip, now), Some(Duration::from_millis(500)));
        for _ in 0..6 {
            t.failed(ip, now);
        }
        assert_eq!(t.delay(ip, now), None, "refused after 10 failures");
        assert_eq!(
            t.delay(other, now),
            Some(Duration::ZERO),
            "other addresses unaffected"
        );
        assert_eq!(
            t.delay(ip, now + Duration::from_secs(601)),
            Some(Duration::ZERO),
            "the window passes"
        );
        t.succeeded(ip);
        assert_eq!(t.delay(ip, now), Some(Duration::ZERO));
    }

    #[test]
    fn positions_are_sent_only_when_they_change() {
        let hub = Hub::default();
        let (tx, mut rx) = mpsc::channel(8);
        hub.join_visitor("b", 1, tx);
        let queue = ["a".to_string(), "b".to_string()];
        hub.send_positions(&queue, Some(30_000));
        match rx.try_recv().unwrap() {
            VisitorEvent::Frame(frame) => match *frame {
                ServerFrame::Queue {
                    position,
                    eta_seconds,
                } => assert_eq!((position, eta_seconds), (2, Some(60))),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        hub.send_positions(&queue, Some(30_000));
        assert!(rx.try_recv().is_err(), "unchanged position not resent");
        hub.send_positions(&queue[1..], Some(30_000));
        assert!(matches!(
            rx.try_recv().unwrap(),
            VisitorEvent::Frame(frame) if matches!(*frame, ServerFrame::Queue { position: 1, .. })
        ));
    }

    #[test]
    fn secrets_compare_by_value() {
        let t = random_token(32);
        assert_eq!(t.len(), 64);
        assert!(same_secret(&hash_token(&t), &hash_token(&t)));
        assert!(!same_secret(&hash_token(&t), &hash_token("x")));
    }
}
