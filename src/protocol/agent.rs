//! Agent frames on `/agent/ws` (docs/protocol.md).

use serde::{Deserialize, Serialize};

use super::{check_message, codes, decode_typed, FrameError};
use crate::store::{AgentConversation, QueueEntry, Ticket};

/// A frame from an agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentFrame {
    Auth {
        token: String,
    },
    Open {
        conversation_id: String,
    },
    Claim {
        conversation_id: String,
    },
    Message {
        conversation_id: String,
        id: String,
        text: String,
    },
    Typing {
        conversation_id: String,
    },
    Note {
        conversation_id: String,
        id: String,
        text: String,
    },
    Release {
        conversation_id: String,
    },
    Transfer {
        conversation_id: String,
        to: String,
    },
    Close {
        conversation_id: String,
        #[serde(default)]
        note: Option<String>,
    },
    AnswerTicket {
        ticket_id: String,
        id: String,
        text: String,
    },
}

const KNOWN_TYPES: &[&str] = &[
    "auth",
    "open",
    "claim",
    "message",
    "typing",
    "note",
    "release",
    "transfer",
    "close",
    "answer_ticket",
];

/// Decodes an agent frame, validating what types alone cannot.
pub fn decode(text: &str, max_message_bytes: usize) -> Result<AgentFrame, FrameError> {
    let frame: AgentFrame = decode_typed(text, KNOWN_TYPES)?;
    match &frame {
        AgentFrame::Message { id, text, .. }
        | AgentFrame::Note { id, text, .. }
        | AgentFrame::AnswerTicket { id, text, .. } => check_message(id, text, max_message_bytes)?,
        AgentFrame::Close { note: Some(n), .. } if n.len() > max_message_bytes => {
            return Err(FrameError::new(
                codes::MESSAGE_TOO_LONG,
                format!(
                    "the note is {} bytes; the limit is {max_message_bytes}",
                    n.len()
                ),
            ))
        }
        AgentFrame::Auth { token } if token.len() > 256 => {
            return Err(FrameError::new(codes::INVALID_FRAME, "token too long"))
        }
        _ => {}
    }
    Ok(frame)
}

/// A frame to an agent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentServerFrame {
    Welcome {
        name: String,
        admin: bool,
        queue: Vec<QueueEntry>,
        assigned: Vec<AgentConversation>,
        tickets: Vec<Ticket>,
        online: Vec<String>,
    },
    Queue {
        entries: Vec<QueueEntry>,
    },
    Conversation {
        conversation: AgentConversation,
    },
    Update {
        conversation_id: String,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    VisitorMessage {
        conversation_id: String,
        id: String,
        text: String,
        at: i64,
    },
    Typing {
        conversation_id: String,
    },
    Note {
        conversation_id: String,
        name: String,
        text: String,
        at: i64,
    },
    Tickets {
        tickets: Vec<Ticket>,
    },
    Online {
        agents: Vec<String>,
    },
    Ack {
        id: String,
    },
    Error {
        code: &'static str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
    },
}

impl AgentServerFrame {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("agent frames always serialize")
    }

    /// An error frame about one conversation.
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        conversation_id: Option<String>,
    ) -> Self {
        AgentServerFrame::Error {
            code,
            message: message.into(),
            conversation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_agent_frames() {
        assert_eq!(
            decode(r#"{"type":"claim","conversation_id":"c1"}"#, 100).unwrap(),
            AgentFrame::Claim {
                conversation_id: "c1".into()
            }
        );
        assert_eq!(
            decode(r#"{"type":"close","conversation_id":"c1"}"#, 100).unwrap(),
            AgentFrame::Close {
                conversation_id: "c1".into(),
                note: None
            }
        );
        let code = |t: &str| decode(t, 10).unwrap_err().code;
        assert_eq!(code(r#"{"type":"hello"}"#), codes::UNKNOWN_TYPE);
        assert_eq!(
            code(r#"{"type":"message","conversation_id":"c","id":"1","text":" "}"#),
            codes::EMPTY_MESSAGE
        );
        assert_eq!(
            code(r#"{"type":"transfer","conversation_id":"c"}"#),
            codes::INVALID_FRAME
        );
    }

    #[test]
    fn server_frames_match_the_wire() {
        let f = AgentServerFrame::error(codes::ALREADY_CLAIMED, "ann took it", Some("c1".into()));
        assert_eq!(
            f.to_json(),
            r#"{"type":"error","code":"already_claimed","message":"ann took it","conversation_id":"c1"}"#
        );
    }
}
