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
    // 3: who or what closed a conversation (a visitor, an agent, or idleness,
    // after which the visitor may reopen it), and indexes for the analytics.
    "ALTER TABLE conversations ADD COLUMN closed_by TEXT;
    CREATE INDEX conversations_closed ON conversations (closed_at) WHERE closed_at IS NOT NULL;
    CREATE INDEX decisions_created ON decisions (created_at);
    ALTER TABLE decisions ADD COLUMN smalltalk INTEGER NOT NULL DEFAULT 0;",
    // 4: decisions without an index on their conversation. Every turn wrote a
    // leaf of that index, a different one for each conversation in a group
    // commit: about a third of the pages a commit wrote. Its only users were
    // closing (which now reaches decisions through the conversation's messages)
    // and the foreign key's cascade, which needs it to find a conversation's
    // decisions; a trigger takes the cascade's place, finding them through the
    // messages, so every way of deleting a conversation still deletes them.
    // SQLite cannot drop a foreign key, so the table is rebuilt (foreign keys
    // are off while migrating, so dropping the old table does not cascade to
    // feedback).
    "CREATE TABLE decisions_v4 (
        answer_id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        message_seq INTEGER,
        kind TEXT NOT NULL,
        source_type TEXT,
        source_id TEXT,
        source_json TEXT,
        quick_replies TEXT NOT NULL DEFAULT '[]',
        score REAL,
        escalation_reason TEXT,
        explanation TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        smalltalk INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO decisions_v4 (answer_id, conversation_id, message_seq, kind, source_type, source_id,
                              source_json, quick_replies, score, escalation_reason, explanation,
                              created_at, smalltalk)
        SELECT answer_id, conversation_id, message_seq, kind, source_type, source_id,
               source_json, quick_replies, score, escalation_reason, explanation,
               created_at, smalltalk
        FROM decisions;
    DROP TABLE decisions;
    ALTER TABLE decisions_v4 RENAME TO decisions;
    CREATE INDEX decisions_created ON decisions (created_at);
    CREATE TRIGGER conversations_delete_decisions BEFORE DELETE ON conversations BEGIN
        DELETE FROM decisions WHERE answer_id IN
            (SELECT answer_id FROM messages WHERE conversation_id = OLD.id AND answer_id IS NOT NULL);
    END;",
    // 5: a turn in one row. The bot's reply to a visitor's message is kept in
    // the message's own row (`reply_text`, and `reply_answer_id` for its
    // decision) instead of a row of its own: the bot's row was a second entry
    // in the conversation's index leaf and a second row in the table for
    // every turn, about a third of the writer's time (docs/benchmarks.md,
    // seventh round). A bot message with no visitor message before it still
    // has a row of its own (role 'bot', `answer_id`). Existing rows stay as
    // they are. The trigger deleting a conversation's decisions finds them
    // through both columns.
    "ALTER TABLE messages ADD COLUMN reply_text TEXT;
    ALTER TABLE messages ADD COLUMN reply_answer_id TEXT;
    DROP TRIGGER conversations_delete_decisions;
    CREATE TRIGGER conversations_delete_decisions BEFORE DELETE ON conversations BEGIN
        DELETE FROM decisions WHERE answer_id IN
            (SELECT answer_id FROM messages WHERE conversation_id = OLD.id AND answer_id IS NOT NULL
             UNION ALL
             SELECT reply_answer_id FROM messages WHERE conversation_id = OLD.id AND reply_answer_id IS NOT NULL);
    END;",
    // 6: a conversation's messages in a chain instead of an index. The index
    // on (conversation_id, client_id) gave every conversation its own leaf
    // pages, so each turn of a group commit wrote a page that no other turn
    // in it shared: two thirds of what the store wrote under load
    // (docs/benchmarks.md, eighth round). Each message now names the one
    // before it in its conversation (`prev_seq`), and `chains` names each
    // conversation's last (`last_seq`); readers walk the chain back from
    // there. The rows of active conversations sit together (conversation
    // ids are ordered by time), and `chains` holds a few hundred
    // conversations a page, so a commit's turns share their pages. (Kept in
    // the conversation's own row, the last message cost a rewrite of that
    // larger row, and one more page, for most turns.) A message id the
    // conversation already has is refused by the writer
    // (src/store/known.rs), as the index's uniqueness did. The
    // foreign key to the conversation goes with the index (deleting a
    // conversation would scan every message for its own): every message is
    // stored by `append_message`, which refuses a conversation that does not
    // exist and links the message as its conversation's last, and deleting
    // a conversation deletes its chain and the chain's decisions
    // (`delete_conversation`), which the dropped trigger did for decisions.
    "DROP TRIGGER conversations_delete_decisions;
    CREATE TABLE chains (
        conversation_id TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO chains (conversation_id, last_seq)
        SELECT conversation_id, MAX(seq) FROM messages GROUP BY conversation_id;
    CREATE TABLE messages_v6 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL,
        client_id TEXT,
        role TEXT NOT NULL CHECK (role IN ('visitor', 'bot', 'agent', 'system')),
        text TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        answer_id TEXT,
        author TEXT,
        reply_text TEXT,
        reply_answer_id TEXT,
        prev_seq INTEGER
    );
    INSERT INTO messages_v6 (seq, conversation_id, client_id, role, text, created_at, answer_id, author,
                             reply_text, reply_answer_id, prev_seq)
        SELECT seq, conversation_id, client_id, role, text, created_at, answer_id, author,
               reply_text, reply_answer_id,
               LAG(seq) OVER (PARTITION BY conversation_id ORDER BY seq)
        FROM messages ORDER BY seq;
    DROP TABLE messages;
    ALTER TABLE messages_v6 RENAME TO messages;",
    // 7: the checks on a message's role and a conversation's state as
    // comparisons instead of `IN` lists. SQLite builds a temporary b-tree for
    // an `IN` list each time a statement checks it: a fifth of the writer's
    // time under load went to building, filling and dropping one for every
    // message stored (docs/benchmarks.md, eleventh round). The checks accept
    // the same values, so only the schema's text changes, as SQLite documents
    // for a change that leaves the stored rows as they are
    // (lang_altertable.html, "Making Other Kinds Of Table Schema Changes");
    // `migrate` bumps the schema's version after every step, so that every
    // connection reads the new text.
    "PRAGMA writable_schema = ON;
    UPDATE sqlite_schema
        SET sql = replace(sql, 'role IN (''visitor'', ''bot'', ''agent'', ''system'')',
                          'role = ''visitor'' OR role = ''bot'' OR role = ''agent'' OR role = ''system''')
        WHERE type = 'table' AND name = 'messages';
    UPDATE sqlite_schema
        SET sql = replace(sql, 'state IN (''bot'', ''queued'', ''with_agent'', ''closed'')',
                          'state = ''bot'' OR state = ''queued'' OR state = ''with_agent'' OR state = ''closed''')
        WHERE type = 'table' AND name = 'conversations';
    PRAGMA writable_schema = RESET;",
    // 8: decisions without an index on their time. Appending to an index
    // B-tree splits its last leaf with its neighbours (a table's last leaf
    // splits on its own), so the index on `created_at` put about 1.7 pages
    // into every group commit at 10,000 messages a second, a tenth of what
    // the commit wrote (docs/benchmarks.md, fourteenth round). The writer
    // stores decisions in the order they are made and never with a time
    // before the last one's, so their times rise with their rowids and a
    // time range is found by bisecting the rowids
    // (`store::decision_rowids`); rows stored before this version keep the
    // times they have.
    "DROP INDEX decisions_created;",
    // 9: messages' `seq` without AUTOINCREMENT. AUTOINCREMENT keeps the
    // largest `seq` ever given in `sqlite_sequence`, which every insert reads
    // and writes back: a page in every group commit and about a microsecond a
    // message. Without it a new message takes the largest `seq` stored plus
    // one, which differs only after the newest messages were deleted, and
    // messages are deleted a conversation at a time, chain and decisions
    // with them, so no row still names a `seq` given again. Order within a
    // conversation is kept: a new message's `seq` is above every stored one.
    // The keyword only decides whether `sqlite_sequence` is kept, so the
    // schema's text is edited, as in migration 7, and the table's entry
    // removed.
    "PRAGMA writable_schema = ON;
    UPDATE sqlite_schema
        SET sql = replace(sql, 'seq INTEGER PRIMARY KEY AUTOINCREMENT', 'seq INTEGER PRIMARY KEY')
        WHERE type = 'table' AND name = 'messages';
    PRAGMA writable_schema = RESET;
    DELETE FROM sqlite_sequence WHERE name = 'messages';",
    // 10: a decision's content stored once for all the decisions that share
    // it. Under load most replies repeat a remembered decision, and each
    // stored its kind, source, quick replies and packed explanation again:
    // about 730 bytes a row, four of every ten pages a group commit wrote
    // (docs/benchmarks.md, fifteenth round). A decision now names its
    // content (`content_id`), which the writer stores once while it
    // remembers it. A content is part of what a visitor said (the
    // explanation holds their words), so it lives exactly as long as a
    // decision names it: `decision_refs` counts the decisions naming each
    // content that may be shared, a content without a count is named by
    // one decision, and the last decision deleted deletes its content. The
    // writer counts each decision it stores, in the same transaction; a
    // trigger would make every insert a statement that writes two tables,
    // which SQLite journals page by page in case it fails half-way (4 µs a
    // turn). Deletions are rare and come in many ways, so a trigger
    // uncounts them. The counts sit in a table of their own, hundreds to a
    // page, so that counting a turn rewrites that small row rather than the
    // content's. Decisions stored before this version get a content each,
    // uncounted, and keep their rowids (their times rise with them,
    // migration 8).
    "CREATE TABLE decision_contents (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        source_type TEXT,
        source_id TEXT,
        source_json TEXT,
        quick_replies TEXT NOT NULL DEFAULT '[]',
        score REAL,
        escalation_reason TEXT,
        explanation TEXT NOT NULL,
        smalltalk INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE decision_refs (
        id INTEGER PRIMARY KEY,
        refs INTEGER NOT NULL
    );
    INSERT INTO decision_contents (id, kind, source_type, source_id, source_json, quick_replies, score,
                                   escalation_reason, explanation, smalltalk)
        SELECT rowid, kind, source_type, source_id, source_json, quick_replies, score,
               escalation_reason, explanation, smalltalk
        FROM decisions;
    CREATE TABLE decisions_v10 (
        answer_id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        message_seq INTEGER,
        content_id INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TRIGGER decisions_release_content AFTER DELETE ON decisions_v10 BEGIN
        UPDATE decision_refs SET refs = refs - 1 WHERE id = OLD.content_id;
        DELETE FROM decision_contents WHERE id = OLD.content_id
            AND NOT EXISTS (SELECT 1 FROM decision_refs WHERE id = OLD.content_id AND refs > 0);
        DELETE FROM decision_refs WHERE id = OLD.content_id AND refs <= 0;
    END;
    INSERT INTO decisions_v10 (rowid, answer_id, conversation_id, message_seq, content_id, created_at)
        SELECT rowid, answer_id, conversation_id, message_seq, rowid, created_at
        FROM decisions ORDER BY rowid;
    DROP TABLE decisions;
    ALTER TABLE decisions_v10 RENAME TO decisions;",
    // 11: the bot's reply text kept with its decision's content. A
    // remembered decision replies with the same text every time, and each
    // turn stored it again in its message's row (`reply_text`): 173 of the
    // row's 306 bytes under load (docs/benchmarks.md, fifteenth round). A
    // reply stored from this version on has its text in the content and
    // none in the message; rows stored before keep theirs, and a content
    // stored before has none.
    "ALTER TABLE decision_contents ADD COLUMN text TEXT;",
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the database up to the latest schema version. Each step re-reads
/// the version inside a write transaction, so two processes opening the same
/// new database (a server starting while `frontdesk agent add` runs, say)
/// apply each migration once.
///
/// Foreign keys are off while migrating (a rebuilt table is dropped and
/// replaced, which must not cascade) and checked before each step commits;
/// the caller turns them on afterwards.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let latest = latest();
    conn.pragma_update(None, "foreign_keys", "off")?;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > latest {
            return Err(StoreError::Schema(format!(
                "database schema version {version} is newer than this frontdesk understands ({latest}); upgrade frontdesk"
            )));
        }
        if version == latest {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[version as usize])?;
        // Other connections read the schema again when its version changes.
        // A step of DDL changes it already; one that edits the schema's text
        // (7) does not; one change more is harmless.
        let cookie: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        tx.pragma_update(None, "schema_version", cookie + 1)?;
        let dangling: i64 =
            tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if dangling > 0 {
            return Err(StoreError::Schema(format!(
                "migration {} left {dangling} rows referring to missing rows; nothing was changed",
                version + 1
            )));
        }
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "database migrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    /// An in-memory database with the schema as it was at `version`.
    fn at_version(version: usize) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, version);
        conn
    }

    /// Brings `conn` to the schema as it was at `version`, step by step.
    fn migrate_to(conn: &Connection, version: usize) {
        for (i, step) in MIGRATIONS[..version].iter().enumerate() {
            conn.execute_batch(step).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
    }

    /// A database file with the schema as it was at `version` and these
    /// rows, and a second connection to it opened before any migration.
    fn file_at_version(version: usize, rows: &str) -> (tempfile::TempDir, Connection, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frontdesk.db");
        let conn = Connection::open(&path).unwrap();
        migrate_to(&conn, version);
        conn.execute_batch(rows).unwrap();
        let other = Connection::open(&path).unwrap();
        (dir, conn, other)
    }

    /// The first column of every row a query returns.
    fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn assert_intact(conn: &Connection) {
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    /// A database written by version 3 keeps every row through the rebuild
    /// of `decisions`, feedback included, and loses only its indexes (on the
    /// conversation; on the time, since migration 8).
    #[test]
    fn decisions_rebuild_keeps_rows_and_feedback() {
        let mut conn = at_version(3);
        conn.execute_batch(
            "INSERT INTO conversations (id, resume_hash, state, created_at, updated_at) VALUES ('c1', 'h', 'bot', 1, 1);
             INSERT INTO messages (conversation_id, client_id, role, text, created_at) VALUES ('c1', 'm1', 'visitor', 'hi', 1);
             INSERT INTO decisions (answer_id, conversation_id, message_seq, kind, explanation, created_at, smalltalk)
                 VALUES ('a1', 'c1', 1, 'answer', '{\"rule\":\"r\"}', 1, 1);
             INSERT INTO messages (conversation_id, role, text, created_at, answer_id) VALUES ('c1', 'bot', 'hello', 1, 'a1');
             INSERT INTO feedback (answer_id, conversation_id, helpful, created_at) VALUES ('a1', 'c1', 1, 2);",
        )
        .unwrap();
        conn.pragma_update(None, "foreign_keys", "on").unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, latest());
        let row: (String, String, i64, String) = conn
            .query_row(
                "SELECT d.conversation_id, k.explanation, k.smalltalk, k.kind
                 FROM decisions d JOIN decision_contents k ON k.id = d.content_id WHERE answer_id = 'a1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            ("c1".into(), r#"{"rule":"r"}"#.into(), 1, "answer".into())
        );
        let feedback: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM feedback WHERE answer_id = 'a1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(feedback, 1, "dropping the old table did not cascade");
        let indexes: Vec<String> = column(
            &conn,
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'decisions' AND sql IS NOT NULL",
        );
        // Only the key's own index is left (its `sql` is null): the one on
        // `created_at` went in migration 8.
        assert!(indexes.is_empty(), "{indexes:?}");
        // Feedback still refers to the rebuilt table.
        conn.pragma_update(None, "foreign_keys", "on").unwrap();
        let err = conn.execute(
            "INSERT INTO feedback (answer_id, conversation_id, helpful, created_at) VALUES ('nope', 'c1', 1, 3)",
            [],
        );
        assert!(err.is_err(), "feedback for a missing decision is refused");
        // Deleting the conversation still deletes its decisions and their feedback.
        assert!(super::super::delete_conversation(&conn, "c1").unwrap());
        let left: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM decisions) + (SELECT COUNT(*) FROM feedback)
                        + (SELECT COUNT(*) FROM decision_contents) + (SELECT COUNT(*) FROM decision_refs)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }

    /// A database at version 5 gets its conversations' chains: every
    /// message, the interleaved conversations' too, reads back in order, and
    /// new messages join the chain only where it ends.
    #[test]
    fn messages_join_their_conversations_chains() {
        let mut conn = at_version(5);
        conn.execute_batch(
            "INSERT INTO conversations (id, resume_hash, state, created_at, updated_at) VALUES ('c1', 'h', 'bot', 1, 1);
             INSERT INTO conversations (id, resume_hash, state, created_at, updated_at) VALUES ('c2', 'h', 'bot', 1, 1);
             INSERT INTO conversations (id, resume_hash, state, created_at, updated_at) VALUES ('c3', 'h', 'bot', 1, 1);
             INSERT INTO messages (conversation_id, client_id, role, text, created_at) VALUES ('c1', 'm1', 'visitor', 'one', 1);
             INSERT INTO messages (conversation_id, client_id, role, text, created_at) VALUES ('c2', 'm1', 'visitor', 'other', 1);
             INSERT INTO messages (conversation_id, role, text, created_at, answer_id) VALUES ('c1', 'bot', 're: one', 1, 'a1');
             INSERT INTO messages (conversation_id, client_id, role, text, created_at, reply_text, reply_answer_id)
                 VALUES ('c1', 'm2', 'visitor', 'two', 2, 're: two', 'a2');
             INSERT INTO messages (conversation_id, role, text, created_at, author) VALUES ('c1', 'agent', 'hi', 3, 'ann');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let texts = |conn: &Connection, id: &str| -> Vec<String> {
            super::super::history(conn, id)
                .unwrap()
                .into_iter()
                .map(|h| h.text)
                .collect()
        };
        assert_eq!(
            texts(&conn, "c1"),
            ["one", "re: one", "two", "re: two", "hi"]
        );
        assert_eq!(texts(&conn, "c2"), ["other"]);
        assert!(texts(&conn, "c3").is_empty());
        let last = |conn: &Connection, id: &str| -> Option<i64> {
            conn.query_row(
                "SELECT last_seq FROM chains WHERE conversation_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
        };
        assert_eq!(last(&conn, "c1"), Some(5));
        assert_eq!(last(&conn, "c3"), None);

        // A message for no conversation is refused; one for a conversation
        // is numbered past every message so far and becomes its last.
        let append = |conn: &Connection, id: &str| {
            super::super::append_message(
                conn,
                id,
                "INSERT INTO messages (conversation_id, role, text, created_at, prev_seq)
                 VALUES (?1, 'system', 'x', 4, ?2)",
                &[&id],
            )
        };
        assert!(matches!(
            append(&conn, "nowhere"),
            Err(super::StoreError::NoConversation(_))
        ));
        append(&conn, "c1").unwrap();
        append(&conn, "c3").unwrap();
        assert_eq!(last(&conn, "c1"), Some(6));
        assert_eq!(last(&conn, "c3"), Some(7));
        assert_eq!(texts(&conn, "c1").len(), 6);
        assert_eq!(texts(&conn, "c3"), ["x"]);

        assert!(super::super::delete_conversation(&conn, "c1").unwrap());
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2, "c2's and c3's messages are left");
    }

    /// A database at version 6 gets the same checks without `IN` lists: the
    /// rows and the values refused stay as they were, no statement storing a
    /// message or a conversation builds a temporary b-tree, and a connection
    /// opened before the migration reads the new schema.
    #[test]
    fn checks_become_comparisons_and_refuse_the_same_values() {
        let (_dir, mut conn, other) = file_at_version(
            6,
            "INSERT INTO conversations (id, resume_hash, state, created_at, updated_at) VALUES ('c1', 'h', 'queued', 1, 1);
             INSERT INTO messages (conversation_id, client_id, role, text, created_at) VALUES ('c1', 'm1', 'visitor', 'one', 1);",
        );
        let insert_message =
            "INSERT INTO messages (conversation_id, role, text, created_at) VALUES ('c1', ?1, 'x', 2)";
        let temporary_btrees = |conn: &Connection, sql: &str, n: usize| -> usize {
            let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let params = vec![rusqlite::types::Value::Null; n];
            let ops: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            ops.iter().filter(|op| *op == "OpenEphemeral").count()
        };
        assert_eq!(temporary_btrees(&other, insert_message, 1), 1);

        migrate(&mut conn).unwrap();

        assert_intact(&conn);
        let update_state = "UPDATE conversations SET state = ?1 WHERE id = 'c1'";
        for role in ["visitor", "bot", "agent", "system"] {
            other.execute(insert_message, [role]).unwrap();
        }
        for role in ["person", "Visitor", ""] {
            let err = other.execute(insert_message, [role]).unwrap_err();
            assert!(err.to_string().contains("CHECK"), "{role}: {err}");
        }
        for state in ["bot", "queued", "with_agent", "closed"] {
            other.execute(update_state, [state]).unwrap();
        }
        let err = other.execute(update_state, ["open"]).unwrap_err();
        assert!(err.to_string().contains("CHECK"), "{err}");
        // (EXPLAIN runs on the schema a connection has read; the statements
        // above made `other` read it again.)
        for c in [&conn, &other] {
            assert_eq!(temporary_btrees(c, insert_message, 1), 0);
            assert_eq!(temporary_btrees(c, update_state, 1), 0);
        }
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 5);
    }

    /// A database at version 8 numbers messages without `sqlite_sequence`:
    /// the rows stay, the database checks out, another connection reads the
    /// new schema, and a new message is numbered after the last one stored
    /// without writing `sqlite_sequence`.
    #[test]
    fn messages_are_numbered_without_a_sequence_table() {
        let (_dir, mut conn, other) = file_at_version(
            8,
            "INSERT INTO conversations (id, resume_hash, state, created_at, updated_at) VALUES ('c1', 'h', 'bot', 1, 1);
             INSERT INTO messages (conversation_id, client_id, role, text, created_at) VALUES ('c1', 'm1', 'visitor', 'one', 1);
             INSERT INTO messages (conversation_id, client_id, role, text, created_at) VALUES ('c1', 'm2', 'visitor', 'two', 2);",
        );
        let sequence = |c: &Connection| -> Option<i64> {
            c.query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
        };
        assert_eq!(sequence(&conn), Some(2));

        migrate(&mut conn).unwrap();

        assert_intact(&conn);
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'messages'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
        assert_eq!(sequence(&conn), None);
        for c in [&conn, &other] {
            c.execute(
                "INSERT INTO messages (conversation_id, role, text, created_at) VALUES ('c1', 'bot', 'x', 3)",
                [],
            )
            .unwrap();
        }
        let seqs: Vec<i64> = column(&conn, "SELECT seq FROM messages ORDER BY seq");
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(sequence(&conn), None, "no connection writes it any more");
    }

    /// A database at version 9 gets a content for each decision: the
    /// decisions keep their rowids, times and feedback, read the content
    /// they had, and the counts are kept from then on, by a connection
    /// opened before the migration too.
    #[test]
    fn decisions_get_their_contents_and_counts() {
        let (_dir, mut conn, other) = file_at_version(
            9,
            "INSERT INTO conversations (id, resume_hash, state, created_at, updated_at) VALUES ('c1', 'h', 'bot', 1, 1);
             INSERT INTO decisions (rowid, answer_id, conversation_id, message_seq, kind, source_type, source_id,
                                    source_json, quick_replies, score, explanation, created_at, smalltalk)
                 VALUES (7, 'a1', 'c1', 1, 'answer', 'article', 'returns', '{\"id\":\"returns\"}', '[]', 0.5, 'x1', 10, 0);
             INSERT INTO decisions (rowid, answer_id, conversation_id, kind, escalation_reason, explanation, created_at)
                 VALUES (9, 'a2', 'c1', 'escalate', 'sensitive', 'x2', 20);
             INSERT INTO feedback (answer_id, conversation_id, helpful, created_at) VALUES ('a1', 'c1', 0, 11);",
        );

        migrate(&mut conn).unwrap();

        assert_intact(&conn);
        let rows: Vec<String> = column(
            &conn,
            "SELECT d.rowid || ' ' || d.answer_id || ' ' || d.created_at || ' ' || k.kind || ' '
                    || COALESCE(k.source_id, '-') || ' ' || COALESCE(k.escalation_reason, '-') || ' '
                    || k.explanation || ' ' || COALESCE(r.refs, 'uncounted')
             FROM decisions d JOIN decision_contents k ON k.id = d.content_id
             LEFT JOIN decision_refs r ON r.id = d.content_id ORDER BY d.rowid",
        );
        assert_eq!(
            rows,
            [
                "7 a1 10 answer returns - x1 uncounted",
                "9 a2 20 escalate - sensitive x2 uncounted"
            ]
        );
        let feedback: Vec<String> = column(&conn, "SELECT answer_id FROM feedback");
        assert_eq!(feedback, ["a1"]);

        // Deleting decisions deletes a content with the last one naming it:
        // a2's at once, a1's once a3, which names it too, is deleted.
        other
            .execute_batch(
                "INSERT INTO decisions (answer_id, conversation_id, content_id, created_at) VALUES ('a3', 'c1', 7, 30);
                 INSERT INTO decision_refs (id, refs) VALUES (7, 2);
                 DELETE FROM decisions WHERE answer_id IN ('a1', 'a2');",
            )
            .unwrap();
        let left: Vec<String> = column(
            &conn,
            "SELECT k.id || ' ' || k.explanation || ' ' || r.refs
             FROM decision_contents k JOIN decision_refs r ON r.id = k.id",
        );
        assert_eq!(left, ["7 x1 1"]);
        other
            .execute("DELETE FROM decisions WHERE answer_id = 'a3'", [])
            .unwrap();
        let counted: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM decision_contents) + (SELECT COUNT(*) FROM decision_refs)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counted, 0);
    }
}
