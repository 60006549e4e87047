//! The visitor wire protocol: JSON text frames with a `type`, decoded into
//! typed messages here and nowhere else. Unknown fields are ignored so fields
//! can be added; anything unusable becomes a [`FrameError`] with a stable code.

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
    AgentJoined {
        name: String,
    },
    AgentMessage {
        text: String,
    },
    AgentLeft {},
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
}

const KNOWN_TYPES: &[&str] = &[
    "hello",
    "message",
    "choice",
    "feedback",
    "request_human",
    "rating",
    "close",
];

/// Decodes a text frame, validating what types alone cannot.
pub fn decode(text: &str, max_message_bytes: usize) -> Result<ClientFrame, FrameError> {
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
    if !KNOWN_TYPES.contains(&ty.as_str()) {
        return Err(FrameError::new(
            codes::UNKNOWN_TYPE,
            format!("unknown frame type {ty:?}"),
        ));
    }
    let frame: ClientFrame = serde_json::from_value(value)
        .map_err(|e| FrameError::new(codes::INVALID_FRAME, format!("{ty}: {e}")))?;
    match &frame {
        ClientFrame::Message { id, text } | ClientFrame::Choice { id, value: text } => {
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
            if text.len() > max_message_bytes {
                return Err(FrameError::new(
                    codes::MESSAGE_TOO_LONG,
                    format!(
                        "message text is {} bytes; the limit is {max_message_bytes}",
                        text.len()
                    ),
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

#[cfg(test)]
mod tests {
    use super::*;

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
            ServerFrame::AgentLeft {}.to_json(),
            r#"{"type":"agent_left"}"#
        );
    }
}
