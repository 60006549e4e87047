//! The handoff side of the store: the queue, claims and assignments, agent
//! messages and notes, offline tickets, and the agents themselves. Every
//! change of hands is one job on the writer thread, so two agents racing for
//! one conversation are serialised and exactly one wins.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::{exec, now_ms, HistoryEntry, Store, StoreError};

/// A conversation waiting for a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueEntry {
    pub conversation_id: String,
    pub reason: Option<String>,
    /// "sensitive" or "normal".
    pub priority: &'static str,
    pub queued_at: i64,
    pub waiting_ms: i64,
    /// The visitor's latest message.
    pub last_message: Option<String>,
    /// Visitor messages since the conversation was queued.
    pub messages_waiting: u32,
}

/// A whole conversation as an agent sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentConversation {
    pub conversation_id: String,
    pub state: String,
    pub agent: Option<String>,
    pub reason: Option<String>,
    pub priority: &'static str,
    pub queued_at: Option<i64>,
    pub claimed_at: Option<i64>,
    pub resolution: Option<String>,
    pub history: Vec<AgentHistoryEntry>,
    pub notes: Vec<Note>,
}

/// A transcript entry with, for the bot's replies, the decision's explanation.
#[derive(Debug, Clone, Serialize)]
pub struct AgentHistoryEntry {
    #[serde(flatten)]
    pub entry: HistoryEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<serde_json::Value>,
}

/// An internal note, never shown to the visitor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub name: String,
    pub text: String,
    pub at: i64,
}

/// A message left for the team when nobody could take the conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    pub ticket_id: String,
    pub conversation_id: Option<String>,
    pub email: String,
    pub text: String,
    /// "outside_hours", "no_agents" or "queue_full".
    pub reason: String,
    pub created_at: i64,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<i64>,
}

/// A configured agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub name: String,
    pub token_hash: String,
    pub admin: bool,
    pub created_at: i64,
}

/// Why a handoff action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnknownConversation,
    Closed,
    /// Another agent holds it (or nobody does: `None`).
    NotYours(Option<String>),
    /// A claim lost: somebody else holds it.
    AlreadyClaimed(Option<String>),
    /// Only queued conversations can be claimed.
    NotQueued,
    UnknownAgent,
    UnknownTicket,
}

/// The result of an action that may be refused.
pub type Handoff<T> = Result<Result<T, Refusal>, StoreError>;

/// A stored agent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored now, at this time.
    Stored { at: i64 },
    /// This message id was already stored; nothing was written.
    Duplicate,
}

fn priority_name(p: i64) -> &'static str {
    if p > 0 {
        "sensitive"
    } else {
        "normal"
    }
}

/// State and holder of a conversation, if it exists.
fn holder(c: &Connection, id: &str) -> rusqlite::Result<Option<(String, Option<String>)>> {
    c.prepare_cached("SELECT state, agent FROM conversations WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Checks that `agent` holds the conversation.
fn held_by(c: &Connection, id: &str, agent: &str) -> Result<Result<(), Refusal>, StoreError> {
    Ok(match holder(c, id)? {
        None => Err(Refusal::UnknownConversation),
        Some((state, _)) if state == "closed" => Err(Refusal::Closed),
        Some((state, Some(a))) if state == "with_agent" && a == agent => Ok(()),
        Some((_, a)) => Err(Refusal::NotYours(a)),
    })
}

fn system_message(
    c: &Connection,
    id: &str,
    author: &str,
    text: &str,
    at: i64,
) -> Result<(), StoreError> {
    super::append_message(
        c,
        id,
        "INSERT INTO messages (conversation_id, role, text, created_at, author, prev_seq)
         VALUES (?1, 'system', ?2, ?3, ?4, ?5)",
        &[&id, &text, &at, &author],
    )
}

/// Stores an agent's message (`client_id` not stored in the conversation yet).
fn insert_agent_message(
    c: &Connection,
    conversation_id: &str,
    client_id: &str,
    text: &str,
    at: i64,
    agent: &str,
) -> Result<(), StoreError> {
    super::append_message(
        c,
        conversation_id,
        "INSERT INTO messages (conversation_id, client_id, role, text, created_at, author, prev_seq)
         VALUES (?1, ?2, 'agent', ?3, ?4, ?5, ?6)",
        &[&conversation_id, &client_id, &text, &at, &agent],
    )
}

impl Store {
    /// The queue: sensitive conversations first, then by longest wait.
    pub async fn queue(&self) -> Result<Vec<QueueEntry>, StoreError> {
        self.run(|c| {
            let now = now_ms();
            let mut stmt = c.prepare_cached(concat!(
                "SELECT c.id, c.escalation_reason, c.priority, c.queued_at, (",
                super::chain!(
                    of "c.id",
                    "SELECT m.text FROM chain JOIN messages m ON m.seq = chain.seq
                     WHERE m.role = 'visitor' ORDER BY m.seq DESC LIMIT 1"
                ),
                "), (",
                super::chain!(
                    of "c.id",
                    while "m.created_at >= c.queued_at",
                    "SELECT COUNT(*) FROM chain JOIN messages m ON m.seq = chain.seq
                     WHERE m.role = 'visitor' AND m.created_at >= c.queued_at"
                ),
                ")
                 FROM conversations c WHERE c.state = 'queued'
                 ORDER BY c.priority DESC, c.queued_at, c.id",
            ))?;
            let rows = stmt.query_map([], |r| {
                let queued_at: i64 = r.get(3)?;
                Ok(QueueEntry {
                    conversation_id: r.get(0)?,
                    reason: r.get(1)?,
                    priority: priority_name(r.get(2)?),
                    queued_at,
                    waiting_ms: (now - queued_at).max(0),
                    last_message: r.get(4)?,
                    messages_waiting: r.get::<_, i64>(5)? as u32,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// How long each place in the queue has recently taken, in
    /// milliseconds: the mean interval between the last 20 claims of the past
    /// day (or the one claim's wait, when there is only one). `None` without
    /// any claims.
    pub async fn pickup_interval_ms(&self) -> Result<Option<i64>, StoreError> {
        self.run(|c| {
            let since = now_ms() - 86_400_000;
            let claims: Vec<(i64, i64)> = c
                .prepare_cached(
                    "SELECT claimed_at, queued_at FROM conversations
                     WHERE claimed_at >= ?1 AND queued_at IS NOT NULL
                     ORDER BY claimed_at DESC LIMIT 20",
                )?
                .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(match claims.as_slice() {
                [] => None,
                [(claimed, queued)] => Some((claimed - queued).max(1000)),
                [newest, .., oldest] => {
                    Some(((newest.0 - oldest.0) / (claims.len() as i64 - 1)).max(1000))
                }
            })
        })
        .await
    }

    /// `agent` takes a queued conversation. Exactly one of several racing
    /// claims wins, and learns how long the conversation waited (ms); the
    /// others learn who holds it.
    pub async fn claim(&self, conversation_id: String, agent: String) -> Handoff<i64> {
        self.run(move |c| {
            match holder(c, &conversation_id)? {
                None => return Ok(Err(Refusal::UnknownConversation)),
                Some((state, _)) if state == "closed" => return Ok(Err(Refusal::Closed)),
                Some((state, holder)) if state == "with_agent" => {
                    return Ok(Err(Refusal::AlreadyClaimed(holder)))
                }
                Some((state, _)) if state != "queued" => return Ok(Err(Refusal::NotQueued)),
                Some(_) => {}
            }
            let now = now_ms();
            exec(
                c,
                "UPDATE conversations SET state = 'with_agent', agent = ?2, updated_at = ?3,
                        claimed_at = COALESCE(claimed_at, ?3)
                 WHERE id = ?1 AND state = 'queued'",
                (&conversation_id, &agent, now),
            )?;
            system_message(c, &conversation_id, &agent, &format!("{agent} joined"), now)?;
            let queued_at: Option<i64> = c
                .prepare_cached("SELECT queued_at FROM conversations WHERE id = ?1")?
                .query_row([&conversation_id], |r| r.get(0))?;
            Ok(Ok(now - queued_at.unwrap_or(now)))
        })
        .await
    }

    /// Puts a conversation `agent` holds back in the queue, at its original place.
    pub async fn release(&self, conversation_id: String, agent: String) -> Handoff<()> {
        self.run(move |c| {
            if let Err(r) = held_by(c, &conversation_id, &agent)? {
                return Ok(Err(r));
            }
            let now = now_ms();
            exec(
                c,
                "UPDATE conversations SET state = 'queued', agent = NULL, updated_at = ?2 WHERE id = ?1",
                (&conversation_id, now),
            )?;
            system_message(c, &conversation_id, &agent, &format!("{agent} left"), now)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Hands a conversation `from` holds to the agent `to`.
    pub async fn transfer(&self, conversation_id: String, from: String, to: String) -> Handoff<()> {
        self.run(move |c| {
            if let Err(r) = held_by(c, &conversation_id, &from)? {
                return Ok(Err(r));
            }
            let known: Option<String> = c
                .prepare_cached("SELECT name FROM agents WHERE name = ?1")?
                .query_row([&to], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Ok(Err(Refusal::UnknownAgent));
            }
            let now = now_ms();
            exec(
                c,
                "UPDATE conversations SET agent = ?2, updated_at = ?3 WHERE id = ?1",
                (&conversation_id, &to, now),
            )?;
            system_message(
                c,
                &conversation_id,
                &from,
                &format!("{from} handed the conversation to {to}"),
                now,
            )?;
            Ok(Ok(()))
        })
        .await
    }

    /// Stores a message from the agent holding the conversation. A message
    /// id already stored is not stored again.
    pub async fn agent_message(
        &self,
        conversation_id: String,
        agent: String,
        client_id: String,
        text: String,
    ) -> Handoff<Written> {
        self.run(move |c| {
            if let Err(r) = held_by(c, &conversation_id, &agent)? {
                return Ok(Err(r));
            }
            let now = now_ms();
            let client_id = format!("agent:{agent}:{client_id}");
            if !super::known::first_time(c, &conversation_id, &client_id)? {
                return Ok(Ok(Written::Duplicate));
            }
            insert_agent_message(c, &conversation_id, &client_id, &text, now, &agent)?;
            exec(
                c,
                "UPDATE conversations SET updated_at = ?2 WHERE id = ?1",
                (&conversation_id, now),
            )?;
            Ok(Ok(Written::Stored { at: now }))
        })
        .await
    }

    /// Adds an internal note to any conversation that is not deleted.
    pub async fn add_note(
        &self,
        conversation_id: String,
        agent: String,
        client_id: String,
        text: String,
    ) -> Handoff<Written> {
        self.run(move |c| {
            if holder(c, &conversation_id)?.is_none() {
                return Ok(Err(Refusal::UnknownConversation));
            }
            let now = now_ms();
            let inserted = exec(
                c,
                "INSERT OR IGNORE INTO notes (conversation_id, client_id, author, text, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (
                    &conversation_id,
                    format!("{agent}:{client_id}"),
                    &agent,
                    &text,
                    now,
                ),
            )?;
            Ok(Ok(if inserted == 0 {
                Written::Duplicate
            } else {
                Written::Stored { at: now }
            }))
        })
        .await
    }

    /// Closes a conversation the agent holds, with a resolution note.
    /// Returns the outcome.
    pub async fn close_by_agent(
        &self,
        conversation_id: String,
        agent: String,
        resolution: Option<String>,
    ) -> Handoff<String> {
        self.run(move |c| {
            if let Err(r) = held_by(c, &conversation_id, &agent)? {
                return Ok(Err(r));
            }
            exec(
                c,
                "UPDATE conversations SET resolution = ?2 WHERE id = ?1",
                (&conversation_id, &resolution),
            )?;
            Ok(Ok(super::close(c, &conversation_id, "agent")?))
        })
        .await
    }

    /// A whole conversation with explanations and notes.
    pub async fn agent_conversation(
        &self,
        conversation_id: String,
    ) -> Result<Option<AgentConversation>, StoreError> {
        self.run(move |c| agent_conversation(c, &conversation_id))
            .await
    }

    /// The conversations `agent` holds, whole.
    pub async fn assigned(&self, agent: String) -> Result<Vec<AgentConversation>, StoreError> {
        self.run(move |c| {
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM conversations WHERE agent = ?1 AND state = 'with_agent' ORDER BY claimed_at",
                )?
                .query_map([&agent], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.extend(agent_conversation(c, &id)?);
            }
            Ok(out)
        })
        .await
    }

    /// Stores an offline message. The same client id in the same
    /// conversation is stored once; returns the ticket.
    pub async fn create_ticket(
        &self,
        conversation_id: Option<String>,
        client_id: String,
        email: String,
        text: String,
        reason: String,
    ) -> Result<Ticket, StoreError> {
        self.run(move |c| {
            if let Some(conv) = &conversation_id {
                let existing: Option<String> = c
                    .prepare_cached(
                        "SELECT id FROM tickets WHERE conversation_id = ?1 AND client_id = ?2",
                    )?
                    .query_row((conv, &client_id), |r| r.get(0))
                    .optional()?;
                if let Some(id) = existing {
                    return ticket(c, &id)?.ok_or(StoreError::Schema("ticket vanished".into()));
                }
            }
            let id = super::time_ordered_id("t_");
            exec(
                c,
                "INSERT INTO tickets (id, conversation_id, client_id, email, text, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                (&id, &conversation_id, &client_id, &email, &text, &reason, now_ms()),
            )?;
            ticket(c, &id)?.ok_or(StoreError::Schema("ticket vanished".into()))
        })
        .await
    }

    /// The most recent offline tickets, newest first.
    pub async fn tickets(&self, limit: usize) -> Result<Vec<Ticket>, StoreError> {
        self.run(move |c| {
            let sql = format!(
                "SELECT {TICKET_COLUMNS} FROM tickets ORDER BY created_at DESC, id DESC LIMIT ?1"
            );
            let tickets = c
                .prepare_cached(&sql)?
                .query_map([limit as i64], ticket_row)?
                .collect::<Result<_, _>>()?;
            Ok(tickets)
        })
        .await
    }

    /// Answers an offline ticket. The answer also goes into the ticket's
    /// conversation, so the visitor finds it there on return.
    pub async fn answer_ticket(
        &self,
        ticket_id: String,
        agent: String,
        text: String,
    ) -> Handoff<Ticket> {
        self.run(move |c| {
            let Some(t) = ticket(c, &ticket_id)? else {
                return Ok(Err(Refusal::UnknownTicket));
            };
            let now = now_ms();
            exec(
                c,
                "UPDATE tickets SET answer = ?2, answered_by = ?3, answered_at = ?4 WHERE id = ?1",
                (&ticket_id, &text, &agent, now),
            )?;
            if let Some(conv) = &t.conversation_id {
                let client_id = format!("ticket:{ticket_id}");
                if super::known::first_time(c, conv, &client_id)? {
                    insert_agent_message(c, conv, &client_id, &text, now, &agent)?;
                }
            }
            Ok(ticket(c, &ticket_id)?.ok_or(Refusal::UnknownTicket))
        })
        .await
    }

    /// Adds an agent with the hash of its token. Returns false if the name is taken.
    pub async fn add_agent(
        &self,
        name: String,
        token_hash: String,
        admin: bool,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            Ok(exec(
                c,
                "INSERT OR IGNORE INTO agents (name, token_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4)",
                (&name, &token_hash, admin, now_ms()),
            )? > 0)
        })
        .await
    }

    /// Removes an agent; the conversations they held go back to the queue.
    pub async fn remove_agent(&self, name: String) -> Result<bool, StoreError> {
        self.run(move |c| {
            let removed = exec(c, "DELETE FROM agents WHERE name = ?1", [&name])? > 0;
            if removed {
                exec(
                    c,
                    "UPDATE conversations SET state = 'queued', agent = NULL, updated_at = ?2
                     WHERE agent = ?1 AND state = 'with_agent'",
                    (&name, now_ms()),
                )?;
            }
            Ok(removed)
        })
        .await
    }

    /// Every agent, by name.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, token_hash, admin, created_at FROM agents ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(AgentRecord {
                    name: r.get(0)?,
                    token_hash: r.get(1)?,
                    admin: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

/// The columns [`ticket_row`] reads, in its order.
const TICKET_COLUMNS: &str =
    "id, conversation_id, email, text, reason, created_at, answer, answered_by, answered_at";

fn ticket_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        ticket_id: r.get(0)?,
        conversation_id: r.get(1)?,
        email: r.get(2)?,
        text: r.get(3)?,
        reason: r.get(4)?,
        created_at: r.get(5)?,
        answer: r.get(6)?,
        answered_by: r.get(7)?,
        answered_at: r.get(8)?,
    })
}

fn ticket(c: &Connection, id: &str) -> Result<Option<Ticket>, StoreError> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], ticket_row)
        .optional()?)
}

fn agent_conversation(c: &Connection, id: &str) -> Result<Option<AgentConversation>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT state, agent, escalation_reason, priority, queued_at, claimed_at, resolution
             FROM conversations WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(AgentConversation {
                conversation_id: id.to_string(),
                state: r.get(0)?,
                agent: r.get(1)?,
                reason: r.get(2)?,
                priority: priority_name(r.get(3)?),
                queued_at: r.get(4)?,
                claimed_at: r.get(5)?,
                resolution: r.get(6)?,
                history: Vec::new(),
                notes: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut conv) = row else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT k.explanation FROM decisions d JOIN decision_contents k ON k.id = d.content_id
         WHERE d.conversation_id = ?1 AND d.answer_id = ?2",
    )?;
    for entry in super::history(c, id)? {
        let explanation = match &entry.answer_id {
            Some(a) => stmt
                .query_row((id, a), |r| Ok(super::packed::unpack(r.get_ref(0)?)))
                .optional()?
                .and_then(|e| match e {
                    Ok(json) => serde_json::from_str(&json).ok(),
                    Err(e) => {
                        tracing::warn!(answer_id = %a, error = %e, "an explanation is unreadable");
                        None
                    }
                }),
            None => None,
        };
        conv.history.push(AgentHistoryEntry { entry, explanation });
    }
    let mut notes = c.prepare_cached(
        "SELECT author, text, created_at FROM notes WHERE conversation_id = ?1 ORDER BY seq",
    )?;
    conv.notes = notes
        .query_map([id], |r| {
            Ok(Note {
                name: r.get(0)?,
                text: r.get(1)?,
                at: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(conv))
}
