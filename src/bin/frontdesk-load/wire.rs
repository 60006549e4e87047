//! The frames the load generator speaks: what a visitor sends, the few fields
//! it reads from what comes back, and the mix of routine shop questions.
//!
//! Written against the wire contract in DESIGN.md rather than the server's own
//! types, so the tool is an outside client just like the widget (and the
//! server's types only go one way: it decodes client frames and encodes server
//! frames; the tool needs the opposite).

use serde::{Deserialize, Serialize};

/// Routine questions a visitor of the demo shop asks, answered by the bot
/// (intents and articles; a few get a clarify reply). None asks for a person,
/// so load stays on the bot path; a conversation that escalates anyway is
/// replaced by a new one.
pub const QUESTIONS: &[&str] = &[
    "how long does delivery take",
    "where is my order FD-123456",
    "can I return sale items",
    "hello",
    "thanks",
    "how do I reset my password",
    "when will I get my refund",
    "what payment methods do you accept",
    "can I change my delivery address",
    "do you have a discount code",
    "how do I use a gift card",
    "can I pay in instalments",
    "what is your returns policy",
    "how much is shipping",
    "are you a bot",
    "can I track my parcel",
    "do you offer click and collect",
    "do you ship internationally",
    "I was charged twice",
    "how do I unsubscribe from emails",
];

/// The question a visitor asks as its `seq`-th message: a fixed rotation,
/// offset per visitor, so every run asks the same mix in the same order.
pub fn question(visitor: usize, seq: u64) -> &'static str {
    let i = (visitor as u64).wrapping_mul(7).wrapping_add(seq) % QUESTIONS.len() as u64;
    QUESTIONS[i as usize]
}

/// A frame from a visitor.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame<'a> {
    Hello { v: u32 },
    Message { id: &'a str, text: &'a str },
}

impl ClientFrame<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client frames are plain strings and numbers")
    }
}

/// The parts of a server frame the tool acts on; other frames and fields are
/// ignored, as the contract asks of clients.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {},
    /// Comes before the reply; the tool waits for the reply.
    Ack {},
    Reply {
        kind: String,
    },
    Error {
        code: String,
    },
    /// The conversation was closed (by an agent or for idleness).
    Closed {},
    /// `queue`, `agent_joined` and anything added later.
    #[serde(other)]
    Other,
}

impl ServerFrame {
    /// Decodes a text frame; a frame that is not JSON with a `type` is `None`.
    pub fn decode(text: &str) -> Option<ServerFrame> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_wire() {
        assert_eq!(
            ClientFrame::Hello { v: 1 }.to_json(),
            r#"{"type":"hello","v":1}"#
        );
        assert_eq!(
            ClientFrame::Message {
                id: "v1-2",
                text: "hi"
            }
            .to_json(),
            r#"{"type":"message","id":"v1-2","text":"hi"}"#
        );
        let reply =
            r#"{"type":"reply","answer_id":"a_1","kind":"escalate","text":"x","quick_replies":[]}"#;
        assert!(
            matches!(ServerFrame::decode(reply), Some(ServerFrame::Reply { kind }) if kind == "escalate")
        );
        assert!(matches!(
            ServerFrame::decode(r#"{"type":"queue","position":3}"#),
            Some(ServerFrame::Other)
        ));
        assert!(ServerFrame::decode("not json").is_none());
    }

    #[test]
    fn every_visitor_asks_the_whole_mix() {
        let asked: std::collections::HashSet<_> = (0..QUESTIONS.len() as u64)
            .map(|s| question(3, s))
            .collect();
        assert_eq!(asked.len(), QUESTIONS.len());
    }
}
