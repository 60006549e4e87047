//! The visitor wire protocol: JSON text frames with a `type`, decoded into
//! typed messages here and nowhere else. Unknown fields are ignored so fields
//! can be added; anything unusable becomes a [`FrameError`] with a stable code.

pub mod agent;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::engine::{Kind, QuickReply, Source};

/// Protocol version spoken by this server.
pub const VERSION: u32 = 1;

/// A frame from a visitor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello {
        #[serde(default = "default_version")]
        v: u32,
        conversation_id: Option<String>,
        resume_token: Option<String>,
    },
    Message {
        id: String,
        text: String,
    },
    Choice {
        id: String,
        value: String,
    },
    Feedback {
        answer_id: String,
        helpful: bool,
    },
    RequestHuman {},
    Typing {},
    LeaveMessage {
        id: String,
        email: String,
        text: String,
    },
    Rating {
        score: u8,
    },
    Close {},
}

fn default_version() -> u32 {
    VERSION
}

/// One entry of the history sent on `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// "visitor", "bot", "agent" or "system".
    pub role: String,
    pub text: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The visitor's message id, for their own messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For bot replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub quick_replies: Vec<QuickReply>,
    /// The agent's name, for agent and system entries they caused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
}

/// A frame to a visitor.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        conversation_id: String,
        resume_token: String,
        state: String,
        history: Vec<HistoryEntry>,
    },
    Ack {
        id: String,
    },
    Reply {
        answer_id: String,
        kind: Kind,
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<Source>,
        quick_replies: Vec<QuickReply>,
    },
    Queue {
        position: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        eta_seconds: Option<u32>,
    },
    /// Nobody can take the conversation now; the visitor may leave a message.
    Offline {
        /// "outside_hours", "no_agents" or "queue_full".
        reason: &'static str,
        message: String,
    },
    Ticket {
        ticket_id: String,
    },
    AgentJoined {
        name: String,
    },
    AgentMessage {
        text: String,
        name: String,
        at: i64,
    },
    /// The person is typing.
    Typing {},
    AgentLeft {
        name: String,
    },
    Closed {
        outcome: String,
    },
    Error {
        code: &'static str,
        message: String,
    },
}

impl ServerFrame {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// The members of a `reply` frame that its decision fixes (all but the
/// answer id), as JSON: what follows `"answer_id":"...",` up to and with the
/// closing brace. A decision's are serialized once, when it is made
/// ([`crate::engine::Decided`]), and each reply is then [`reply_frame`].
pub fn reply_members(
    kind: Kind,
    text: &str,
    source: Option<&Source>,
    quick_replies: &[QuickReply],
) -> String {
    #[derive(Serialize)]
    struct Members<'a> {
        kind: Kind,
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<&'a Source>,
        quick_replies: &'a [QuickReply],
    }
    let json = serde_json::to_string(&Members {
        kind,
        text,
        source,
        quick_replies,
    })
    .expect("reply members serialize");
    json[1..].to_string()
}

/// A `reply` frame from its answer id and [`reply_members`]: the same JSON as
/// `ServerFrame::Reply` with those fields.
pub fn reply_frame(answer_id: &str, members: &str) -> String {
    const HEAD: &str = r#"{"type":"reply","answer_id":"#;
    let mut out = String::with_capacity(HEAD.len() + answer_id.len() + 3 + members.len());
    out.push_str(HEAD);
    // The server's own ids need no escaping; anything else is escaped.
    if answer_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        out.push('"');
        out.push_str(answer_id);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(answer_id).expect("a string serializes"));
    }
    out.push(',');
    out.push_str(members);
    out
}

/// Why a client frame could not be used. The code is part of the public
/// contract and never changes meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

impl FrameError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
        }
    }

    pub fn frame(&self) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

/// Stable error codes.
pub mod codes {
    pub const BAD_JSON: &str = "bad_json";
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    pub const INVALID_FRAME: &str = "invalid_frame";
    pub const BINARY_FRAME: &str = "binary_frame";
    pub const EMPTY_MESSAGE: &str = "empty_message";
    pub const MESSAGE_TOO_LONG: &str = "message_too_long";
    pub const NOT_STARTED: &str = "not_started";
    pub const ALREADY_STARTED: &str = "already_started";
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    pub const UNKNOWN_ANSWER: &str = "unknown_answer";
    pub const INVALID_RATING: &str = "invalid_rating";
    pub const CONVERSATION_CLOSED: &str = "conversation_closed";
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    pub const SHUTTING_DOWN: &str = "shutting_down";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const INVALID_EMAIL: &str = "invalid_email";
    pub const CONVERSATION_TOO_LONG: &str = "conversation_too_long";
    pub const AUTH_REQUIRED: &str = "auth_required";
    pub const AUTH_FAILED: &str = "auth_failed";
    pub const TOO_MANY_ATTEMPTS: &str = "too_many_attempts";
    pub const ALREADY_CLAIMED: &str = "already_claimed";
    pub const NOT_QUEUED: &str = "not_queued";
    pub const NOT_YOURS: &str = "not_yours";
    pub const UNKNOWN_CONVERSATION: &str = "unknown_conversation";
    pub const UNKNOWN_AGENT: &str = "unknown_agent";
    pub const UNKNOWN_TICKET: &str = "unknown_ticket";
}

const KNOWN_TYPES: &[&str] = &[
    "hello",
    "message",
    "choice",
    "feedback",
    "request_human",
    "typing",
    "leave_message",
    "rating",
    "close",
];

/// Decodes a text frame, validating what types alone cannot.
pub fn decode(text: &str, max_message_bytes: usize) -> Result<ClientFrame, FrameError> {
    let frame = match decode_message(text) {
        Some(frame) => frame,
        None => decode_typed(text, KNOWN_TYPES)?,
    };
    match &frame {
        ClientFrame::Message { id, text } | ClientFrame::Choice { id, value: text } => {
            check_message(id, text, max_message_bytes)?
        }
        ClientFrame::LeaveMessage { id, email, text } => {
            check_message(id, text, max_message_bytes)?;
            if !valid_email(email.trim()) {
                return Err(FrameError::new(
                    codes::INVALID_EMAIL,
                    "that does not look like an email address",
                ));
            }
        }
        ClientFrame::Rating { score } if !(1..=5).contains(score) => {
            return Err(FrameError::new(
                codes::INVALID_RATING,
                "score must be 1 to 5",
            ));
        }
        ClientFrame::Hello { v, .. } if *v != VERSION => {
            return Err(FrameError::new(
                codes::UNSUPPORTED_VERSION,
                format!("protocol version {v} is not supported; this server speaks {VERSION}"),
            ));
        }
        _ => {}
    }
    Ok(frame)
}

/// The frame visitors send most, a `message`, parsed in one pass straight
/// into its fields, without building the JSON tree that [`decode_typed`]
/// reads the type from. `None` for any other frame and for any message this
/// pass refuses (a key given twice, say): [`decode_typed`] then decides, with
/// its errors. Whatever this accepts, [`decode_typed`] reads the same way
/// (checked on every fuzzed frame: [`crate::fuzzing::frame`]).
pub(crate) fn decode_message(text: &str) -> Option<ClientFrame> {
    #[derive(Deserialize)]
    enum MessageType {
        #[serde(rename = "message")]
        Message,
    }
    #[derive(Deserialize)]
    struct Message {
        #[serde(rename = "type")]
        _type: MessageType,
        id: String,
        text: String,
    }
    let m: Message = serde_json::from_str(text).ok()?;
    Some(ClientFrame::Message {
        id: m.id,
        text: m.text,
    })
}

/// Parses a JSON object with a `type` among `known` into `T`.
pub(crate) fn decode_typed<T: DeserializeOwned>(
    text: &str,
    known: &[&str],
) -> Result<T, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| FrameError::new(codes::BAD_JSON, format!("not valid JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(FrameError::new(
            codes::INVALID_FRAME,
            "a frame is a JSON object",
        ));
    };
    let ty = match obj.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(_) => {
            return Err(FrameError::new(
                codes::INVALID_FRAME,
                "`type` must be a string",
            ))
        }
        None => {
            return Err(FrameError::new(
                codes::INVALID_FRAME,
                "missing field `type`",
            ))
        }
    };
    if !known.contains(&ty.as_str()) {
        return Err(FrameError::new(
            codes::UNKNOWN_TYPE,
            format!("unknown frame type {ty:?}"),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| FrameError::new(codes::INVALID_FRAME, format!("{ty}: {e}")))
}

/// Checks a client's message id and text.
pub(crate) fn check_message(id: &str, text: &str, max_bytes: usize) -> Result<(), FrameError> {
    if id.is_empty() || id.len() > 128 {
        return Err(FrameError::new(
            codes::INVALID_FRAME,
            "message id must be 1 to 128 bytes",
        ));
    }
    if text.trim().is_empty() {
        return Err(FrameError::new(
            codes::EMPTY_MESSAGE,
            "message text is empty",
        ));
    }
    if text.len() > max_bytes {
        return Err(FrameError::new(
            codes::MESSAGE_TOO_LONG,
            format!(
                "message text is {} bytes; the limit is {max_bytes}",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// A plausible email address: one `@`, a dot in the domain, no spaces, at most 254 bytes.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply put together from members serialized once reads exactly as
    /// the frame serialized whole, with and without a source.
    #[test]
    fn a_reply_from_its_members_is_the_whole_frame() {
        use crate::engine::SourceKind;
        let source = Source {
            kind: SourceKind::Article,
            id: "refunds".into(),
            title: Some("Refunds \"fast\"".into()),
            url: None,
        };
        let quick = vec![QuickReply {
            label: "Talk to a person".into(),
            value: "human\n".into(),
        }];
        let text = "Line one\nline \"two\" — ünïcode \u{1}";
        for source in [Some(source), None] {
            let whole = ServerFrame::Reply {
                answer_id: "a_0193\"x".into(),
                kind: Kind::Answer,
                text: text.into(),
                source: source.clone(),
                quick_replies: quick.clone(),
            }
            .to_json();
            let members = reply_members(Kind::Answer, text, source.as_ref(), &quick);
            assert_eq!(reply_frame("a_0193\"x", &members), whole);
            let plain = ServerFrame::Reply {
                answer_id: "a_0193ab-c".into(),
                kind: Kind::Answer,
                text: text.into(),
                source: source.clone(),
                quick_replies: quick.clone(),
            }
            .to_json();
            assert_eq!(reply_frame("a_0193ab-c", &members), plain);
        }
    }

    #[test]
    fn decodes_frames_and_ignores_unknown_fields() {
        assert_eq!(
            decode(r#"{"type":"message","id":"m1","text":"hi","extra":1}"#, 100).unwrap(),
            ClientFrame::Message {
                id: "m1".into(),
                text: "hi".into()
            }
        );
        assert_eq!(
            decode(r#"{"type":"hello"}"#, 100).unwrap(),
            ClientFrame::Hello {
                v: 1,
                conversation_id: None,
                resume_token: None
            }
        );
        assert_eq!(
            decode(r#"{"type":"close"}"#, 100).unwrap(),
            ClientFrame::Close {}
        );
    }

    /// Messages take the one-pass path, and read as the general path reads
    /// them; what that path refuses still gets the general path's answer.
    #[test]
    fn a_message_decodes_in_one_pass_as_in_two() {
        for t in [
            r#"{"type":"message","id":"m1","text":"where is my order?"}"#,
            r#"{"text":"h\u00e9 \"x\"","id":"m2","type":"message"}"#,
            r#" {"type":"message","id":"m3","text":"hi","extra":{"a":[1,2]}} "#,
        ] {
            assert!(crate::fuzzing::one_pass_agrees(t), "{t}");
            assert_eq!(decode(t, 100).unwrap(), decode_message(t).unwrap());
        }
        for t in [
            r#"{"type":"message","id":"m1","text":"a","text":"b"}"#,
            r#"{"type":"message","id":"m1"}"#,
            r#"{"type":"message","id":1,"text":"a"}"#,
            r#"{"type":"hello"}"#,
            r#"{"type":"message","id":"m1","text":"a"} x"#,
        ] {
            assert_eq!(decode_message(t), None, "{t}");
        }
        // A key given twice: the general path takes the last, as before.
        assert_eq!(
            decode(r#"{"type":"message","id":"m1","text":"a","text":"b"}"#, 100).unwrap(),
            ClientFrame::Message {
                id: "m1".into(),
                text: "b".into()
            }
        );
        assert_eq!(
            decode(r#"{"type":"message","id":"m1"}"#, 100)
                .unwrap_err()
                .code,
            codes::INVALID_FRAME
        );
    }

    /// Frames put together at random from keys and values that matter to the
    /// two decoders (the type, the fields, duplicates, escapes, other types):
    /// whatever the one-pass decoder accepts, the general one reads the same.
    #[test]
    fn the_one_pass_decoder_agrees_with_the_general_one_on_random_frames() {
        const KEYS: &[&str] = &["type", "id", "text", "extra", "Type", "typ\\u0065"];
        // Strings first: `VALUES[..6]` are the ones a message's fields take.
        const VALUES: &[&str] = &[
            r#""message""#,
            r#""hello""#,
            r#""m1""#,
            r#""a\"b\\c""#,
            r#""\u00e9\ud83d\ude00""#,
            r#""""#,
            "1",
            "null",
            "true",
            r#"{"x":[1,{"y":null}]}"#,
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            // Half the frames start from a valid message's three fields.
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            if next(2) == 0 {
                pairs.push(("type", VALUES[0]));
                pairs.push(("id", VALUES[next(6)]));
                pairs.push(("text", VALUES[next(6)]));
            }
            for _ in 0..next(4) {
                pairs.push((KEYS[next(KEYS.len())], VALUES[next(VALUES.len())]));
            }
            for i in (1..pairs.len()).rev() {
                pairs.swap(i, next(i + 1));
            }
            let mut frame = String::from("{");
            for (i, (key, value)) in pairs.into_iter().enumerate() {
                if i > 0 {
                    frame.push(',');
                }
                frame.push_str([" ", "", "\n"][next(3)]);
                frame.push_str(&format!("\"{key}\":{value}"));
            }
            frame.push('}');
            if next(20) == 0 {
                frame.push_str([" x", "}", " "][next(3)]);
            }
            if crate::fuzzing::one_pass_agrees(&frame) {
                accepted += 1;
            }
        }
        // The generator does reach the one-pass decoder's successes.
        assert!(accepted > 1_000, "{accepted}");
    }

    #[test]
    fn bad_frames_get_stable_codes() {
        let code = |t: &str| decode(t, 10).unwrap_err().code;
        assert_eq!(code("{not json"), codes::BAD_JSON);
        assert_eq!(code("[1]"), codes::INVALID_FRAME);
        assert_eq!(code(r#"{"type":"dance"}"#), codes::UNKNOWN_TYPE);
        assert_eq!(code(r#"{"type":"message","id":"1"}"#), codes::INVALID_FRAME);
        assert_eq!(
            code(r#"{"type":"message","id":"1","text":"  "}"#),
            codes::EMPTY_MESSAGE
        );
        assert_eq!(
            code(r#"{"type":"message","id":"1","text":"12345678901"}"#),
            codes::MESSAGE_TOO_LONG
        );
        assert_eq!(
            code(r#"{"type":"rating","score":9}"#),
            codes::INVALID_RATING
        );
        assert_eq!(
            code(r#"{"type":"hello","v":2}"#),
            codes::UNSUPPORTED_VERSION
        );
    }

    #[test]
    fn server_frames_match_the_wire() {
        let f = ServerFrame::Ack { id: "m1".into() };
        assert_eq!(f.to_json(), r#"{"type":"ack","id":"m1"}"#);
        assert_eq!(
            ServerFrame::AgentLeft { name: "sam".into() }.to_json(),
            r#"{"type":"agent_left","name":"sam"}"#
        );
        assert_eq!(ServerFrame::Typing {}.to_json(), r#"{"type":"typing"}"#);
    }
}
