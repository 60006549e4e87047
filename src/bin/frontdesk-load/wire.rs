//! The frames the load generator speaks: what a visitor sends, the few fields
//! it reads from what comes back, and the mix of routine shop questions.
//!
//! Written against the wire contract in docs/protocol.md rather than the server's own
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

/// What a visitor says with `--escalate-every`: an explicit request for a
/// person, which the demo content escalates to the queue.
pub const HANDOFF_REQUEST: &str = "I want to talk to a person";

/// The question a visitor asks as its `seq`-th message: a fixed rotation,
/// offset per visitor, so every run asks the same mix in the same order.
pub fn question(visitor: usize, seq: u64) -> &'static str {
    let i = (visitor as u64).wrapping_mul(7).wrapping_add(seq) % QUESTIONS.len() as u64;
    QUESTIONS[i as usize]
}

/// `text` with each ASCII letter in upper or lower case by the bits of a hash
/// of (visitor, seq): the same words, which the server reads the same way,
/// but seldom the same text twice for a question of more than a few letters.
pub fn vary_case(text: &str, visitor: usize, seq: u64) -> String {
    // SplitMix64: a cheap, well-spread hash of the pair.
    let mut z = (visitor as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(seq)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut bits = z ^ (z >> 31);
    text.chars()
        .map(|c| {
            if !c.is_ascii_alphabetic() {
                return c;
            }
            let upper = bits & 1 == 1;
            bits = bits.rotate_right(1);
            if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A frame from a visitor.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame<'a> {
    /// Starts a conversation, or resumes one when both its id and token are given.
    Hello {
        v: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<&'a str>,
    },
    Message {
        id: &'a str,
        text: &'a str,
    },
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
    Welcome {
        #[serde(default)]
        conversation_id: String,
        #[serde(default)]
        resume_token: String,
        /// `bot`, or `queued` / `with_agent` once handed to a person.
        #[serde(default)]
        state: String,
        /// On a resumed conversation: what is stored of it so far.
        #[serde(default)]
        history: Vec<HistoryEntry>,
    },
    /// The message with this id is stored; the reply comes after it.
    Ack {
        #[serde(default)]
        id: String,
    },
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

/// The part of a `welcome` history entry the tool reads: the ids of the
/// visitor's own stored messages.
#[derive(Debug, Deserialize)]
pub struct HistoryEntry {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub id: Option<String>,
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
            ClientFrame::Hello {
                v: 1,
                conversation_id: None,
                resume_token: None
            }
            .to_json(),
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
    fn resuming_names_the_conversation_and_reads_its_history() {
        assert_eq!(
            ClientFrame::Hello {
                v: 1,
                conversation_id: Some("c_1"),
                resume_token: Some("t")
            }
            .to_json(),
            r#"{"type":"hello","v":1,"conversation_id":"c_1","resume_token":"t"}"#
        );
        let welcome = r#"{"type":"welcome","conversation_id":"c_1","resume_token":"t","state":"bot",
            "history":[{"role":"visitor","text":"hi","at":1,"id":"v0-0"},
                       {"role":"bot","text":"Hello!","at":2,"answer_id":"a_1","kind":"answer"}]}"#;
        let Some(ServerFrame::Welcome {
            conversation_id,
            state,
            history,
            ..
        }) = ServerFrame::decode(welcome)
        else {
            panic!("welcome not decoded");
        };
        assert_eq!((conversation_id.as_str(), state.as_str()), ("c_1", "bot"));
        let ids: Vec<_> = history.iter().filter_map(|h| h.id.as_deref()).collect();
        assert_eq!(ids, ["v0-0"]);
        assert!(matches!(
            ServerFrame::decode(r#"{"type":"ack","id":"v0-1"}"#),
            Some(ServerFrame::Ack { id }) if id == "v0-1"
        ));
    }

    #[test]
    fn every_visitor_asks_the_whole_mix() {
        let asked: std::collections::HashSet<_> = (0..QUESTIONS.len() as u64)
            .map(|s| question(3, s))
            .collect();
        assert_eq!(asked.len(), QUESTIONS.len());
    }

    #[test]
    fn varied_case_keeps_the_words_and_rarely_repeats() {
        // A question of n letters has 2^n spellings: "hello" repeats often,
        // the longer questions seldom.
        let mut seen = std::collections::HashSet::new();
        for visitor in 0..100 {
            for seq in 0..100 {
                let q = question(visitor, seq);
                let v = vary_case(q, visitor, seq);
                assert_eq!(v.to_lowercase(), q.to_lowercase());
                seen.insert(v);
            }
        }
        assert!(seen.len() > 8_500, "{} distinct of 10,000", seen.len());
    }
}
