//! Versioned schema migrations, tracked in SQLite's `user_version`. Each entry
//! runs once, in order, in its own transaction; released migrations are never
//! edited, only appended to.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: conversations, messages, decisions, feedback.
    "CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        resume_hash TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('bot', 'queued', 'with_agent', 'closed')),
        context TEXT NOT NULL DEFAULT '{}',
        escalation_reason TEXT,
        outcome TEXT,
        rating INTEGER CHECK (rating BETWEEN 1 AND 5),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        queued_at INTEGER,
        closed_at INTEGER
    );
    CREATE INDEX conversations_queue ON conversations (state, queued_at);
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        client_id TEXT,
        role TEXT NOT NULL CHECK (role IN ('visitor', 'bot', 'agent', 'system')),
        text TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        answer_id TEXT,
        UNIQUE (conversation_id, client_id)
    );
    -- UNIQUE (conversation_id, client_id) also serves lookups by conversation.
    CREATE TABLE decisions (
        answer_id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        message_seq INTEGER,
        kind TEXT NOT NULL,
        source_type TEXT,
        source_id TEXT,
        source_json TEXT,
        quick_replies TEXT NOT NULL DEFAULT '[]',
        score REAL,
        escalation_reason TEXT,
        explanation TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX decisions_conversation ON decisions (conversation_id);
    CREATE TABLE feedback (
        answer_id TEXT PRIMARY KEY REFERENCES decisions (answer_id) ON DELETE CASCADE,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        helpful INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 2: the handoff queue (priority, assignment), agents, internal notes,
    // offline tickets, and who wrote each agent message.
    "ALTER TABLE conversations ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN agent TEXT;
    ALTER TABLE conversations ADD COLUMN claimed_at INTEGER;
    ALTER TABLE conversations ADD COLUMN resolution TEXT;
    ALTER TABLE messages ADD COLUMN author TEXT;
    DROP INDEX conversations_queue;
    CREATE INDEX conversations_queue ON conversations (state, priority DESC, queued_at);
    CREATE INDEX conversations_agent ON conversations (agent) WHERE agent IS NOT NULL;
    CREATE INDEX conversations_claimed ON conversations (claimed_at) WHERE claimed_at IS NOT NULL;
    CREATE TABLE agents (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        admin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE notes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        client_id TEXT,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (conversation_id, client_id)
    );
    CREATE TABLE tickets (
        id TEXT PRIMARY KEY,
        conversation_id TEXT REFERENCES conversations (id) ON DELETE CASCADE,
        client_id TEXT,
        email TEXT NOT NULL,
        text TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        answer TEXT,
        answered_by TEXT,
        answered_at INTEGER,
        UNIQUE (conversation_id, client_id)
    );
    CREATE INDEX tickets_created ON tickets (created_at);",
];

/// Brings the database up to the latest schema version.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(StoreError::Schema(format!(
            "database schema version {version} is newer than this frontdesk understands ({latest}); upgrade frontdesk"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}
