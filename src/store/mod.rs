//! Persistence in SQLite (WAL). One writer thread owns the connection; callers
//! send it jobs. Jobs that arrive together run in one transaction (group
//! commit), each inside its own savepoint so one failing job does not undo the
//! others, and every caller hears back only after the commit, so an `ack`
//! always means "on disk".

/// A statement over the messages of a conversation, which it reaches
/// through the conversation's chain (migration 6): the `chain` table holds
/// their `seq`s, newest first. The conversation is `?1`, or the SQL given
/// after `of` (an outer query's column); the walk back stops after the first
/// message that fails the condition given after `while`, if any.
macro_rules! chain {
    ($statement:literal) => {
        chain!(of "?1", $statement)
    };
    (of $conversation:literal, $statement:literal) => {
        chain!(of $conversation, while "TRUE", $statement)
    };
    (of $conversation:literal, while $condition:literal, $statement:literal) => {
        concat!(
            "WITH RECURSIVE chain(seq) AS (
                SELECT last_seq FROM chains WHERE conversation_id = ",
            $conversation,
            "
                UNION ALL
                SELECT m.prev_seq FROM messages m JOIN chain ON m.seq = chain.seq
                WHERE m.prev_seq IS NOT NULL AND (",
            $condition,
            ")) ",
            $statement
        )
    };
}
pub(crate) use chain;

mod handoff;
mod known;
pub mod packed;
mod schema;

pub use handoff::{
    AgentConversation, AgentHistoryEntry, AgentRecord, Handoff, Note, QueueEntry, Refusal, Ticket,
    Written,
};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, Statement, ToSql};
use tokio::sync::{mpsc, oneshot};

use crate::analytics::metrics::Histogram;
use crate::config::{StoreConfig, Synchronous};
use crate::protocol::HistoryEntry;

/// Errors from the store. Callers see them as "not stored": nothing is
/// acknowledged after one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store has shut down")]
    Closed,
    #[error("{0}")]
    Schema(String),
    #[error("no conversation {0}")]
    NoConversation(String),
}

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&mut WriterConnection<'_>) -> Ran + Send>;

/// The writer's connection, with the statements that store a turn prepared
/// once for as long as the writer runs. `prepare_cached` hashes and copies a
/// statement's text on every use, and a turn runs four of them: together
/// with putting them back, 2-3% of the core under load (docs/benchmarks.md,
/// eleventh round).
struct WriterConnection<'c> {
    conn: &'c Connection,
    hot: [Option<Statement<'c>>; Hot::COUNT],
    /// The time given to the last decision stored, once read or written.
    last_decided_at: Option<i64>,
    /// Stored decision contents named again by a decision in the open
    /// group, once per decision: counted together before anything else can
    /// delete a decision ([`WriterConnection::count_named`]).
    named: Vec<i64>,
}

/// The statements a turn runs.
#[derive(Clone, Copy)]
enum Hot {
    LastSeq,
    InsertVisitorMessage,
    UpdateChain,
    InsertChain,
    InsertContent,
    CountNewContent,
    CountContent,
    InsertDecision,
}

impl Hot {
    const COUNT: usize = 8;

    fn sql(self) -> &'static str {
        match self {
            Hot::LastSeq => "SELECT last_seq FROM chains WHERE conversation_id = ?1",
            Hot::InsertVisitorMessage => {
                "INSERT INTO messages (conversation_id, client_id, role, text, created_at,
                                       reply_answer_id, prev_seq)
                 VALUES (?1, ?2, 'visitor', ?3, ?4, ?5, ?6)"
            }
            Hot::UpdateChain => "UPDATE chains SET last_seq = ?2 WHERE conversation_id = ?1",
            Hot::InsertChain => "INSERT INTO chains (conversation_id, last_seq) VALUES (?1, ?2)",
            Hot::InsertContent => {
                "INSERT INTO decision_contents (kind, source_type, source_id, source_json, quick_replies,
                                                score, escalation_reason, explanation, smalltalk, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            }
            Hot::CountNewContent => "INSERT INTO decision_refs (id, refs) VALUES (?1, 1)",
            Hot::CountContent => "UPDATE decision_refs SET refs = refs + ?2 WHERE id = ?1",
            Hot::InsertDecision => {
                "INSERT INTO decisions (answer_id, conversation_id, message_seq, content_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            }
        }
    }

    /// The statement that makes a message its conversation's last (`?1` the
    /// conversation, `?2` the message), given the last before it.
    fn link_last(prev: Option<i64>) -> Hot {
        if prev.is_some() {
            Hot::UpdateChain
        } else {
            Hot::InsertChain
        }
    }
}

impl<'c> WriterConnection<'c> {
    fn new(conn: &'c Connection) -> WriterConnection<'c> {
        WriterConnection {
            conn,
            hot: Default::default(),
            last_decided_at: None,
            named: Vec::new(),
        }
    }

    /// Adds the decisions of the open group that named a stored content to
    /// that content's count: one statement per content rather than one per
    /// decision (most of a group's decisions name a few popular contents).
    /// Runs before the group commits and before any other job, since only
    /// those may delete decisions, whose trigger needs the counts true. A
    /// count not found fails the group: the writer only names a content it
    /// remembers storing, and forgets them all when one may be deleted.
    fn count_named(&mut self) -> Result<(), StoreError> {
        if self.named.is_empty() {
            return Ok(());
        }
        let mut named = std::mem::take(&mut self.named);
        named.sort_unstable();
        let result = named
            .chunk_by(|a, b| a == b)
            .try_for_each(|same| -> Result<(), StoreError> {
                let id = same[0];
                if self
                    .hot(Hot::CountContent)?
                    .execute((id, same.len() as i64))?
                    != 1
                {
                    return Err(StoreError::Schema(format!(
                        "decision content {id} is named but not counted"
                    )));
                }
                Ok(())
            });
        named.clear();
        self.named = named;
        result
    }

    /// The time to store with a decision made `now`: never before the last
    /// decision's, so that decisions' times rise with their rowids and a
    /// time range is a range of rowids ([`decision_rowids`]). A clock set
    /// back holds the decisions' times where they were until it catches up.
    fn decided_at(&mut self, now: i64) -> rusqlite::Result<i64> {
        let last = match self.last_decided_at {
            Some(t) => t,
            None => self
                .conn
                .query_row(
                    "SELECT created_at FROM decisions ORDER BY rowid DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(now),
        };
        let at = now.max(last);
        // Kept even if the batch rolls back: a bound above the last stored
        // time keeps the order as well.
        self.last_decided_at = Some(at);
        Ok(at)
    }

    /// The statement, prepared the first time it is asked for.
    fn hot(&mut self, which: Hot) -> rusqlite::Result<&mut Statement<'c>> {
        let slot = &mut self.hot[which as usize];
        if slot.is_none() {
            *slot = Some(self.conn.prepare(which.sql())?);
        }
        Ok(slot.as_mut().expect("prepared above"))
    }
}

/// A job that has run in the open transaction.
struct Ran {
    /// Tells the caller, once the commit's fate is known.
    done: Completion,
    /// The job failed after part of it was written, and it ran without a
    /// savepoint: only rolling back the whole batch undoes it.
    torn: bool,
}

/// A cheap, cloneable handle to the writer.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

/// What the writer thread measures of its own work, for `/metrics`: a
/// reply's latency is mostly the wait for its group's commit.
pub struct WriterStats {
    /// From a group's first statement to its commit being durable (synced
    /// when `synchronous = "full"`).
    pub commit_seconds: Histogram,
    /// Jobs (mostly turns) per group commit.
    pub group_jobs: Histogram,
    /// How long each restart of the log held commits back.
    pub wal_restart_seconds: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            commit_seconds: Histogram::new(&[
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            group_jobs: Histogram::new(&[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
            wal_restart_seconds: Histogram::new(&[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        }
    }
}

/// Owns the writer thread; [`WriterGuard::join`] waits until every job sent
/// before the last [`Store`] handle was dropped is committed.
pub struct WriterGuard {
    thread: Option<JoinHandle<()>>,
}

impl WriterGuard {
    /// Blocks until the writer has flushed and stopped. Drop every `Store` first.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An identifier that sorts by creation time (milliseconds, then 64 bits that
/// differ for every id): new rows land at the end of the database's indexes
/// instead of on a random page, which keeps group commits small.
///
/// The 64 bits are a per-process random start plus a counter, mixed so that
/// consecutive ids do not look alike; ids are unique within a process and,
/// with overwhelming probability, across restarts. They name things and grant
/// nothing (resuming a conversation takes its secret token), so they need not
/// be unpredictable, and making one costs no system call.
pub fn time_ordered_id(prefix: &str) -> String {
    use std::sync::atomic::AtomicU64;
    use std::sync::OnceLock;
    static START: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the operating system provides randomness");
        u64::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // An odd multiplier is a bijection on u64, so distinct counters stay distinct.
    let bits = start.wrapping_add(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut id = String::with_capacity(prefix.len() + 28);
    id.push_str(prefix);
    push_hex(&mut id, now_ms() as u64, 12);
    push_hex(&mut id, bits, 16);
    id
}

/// Appends the low `digits` hex digits of `value`, zero-padded, in lower case
/// (`format!("{value:0digits$x}")` for values that fit, without the
/// formatting machinery).
fn push_hex(out: &mut String, value: u64, digits: u32) {
    for shift in (0..digits).rev() {
        let nibble = ((value >> (shift * 4)) & 0xf) as u32;
        out.push(char::from_digit(nibble, 16).expect("a nibble is a hex digit"));
    }
}

/// How long a connection waits for a lock another holds: another process (the
/// CLI beside a server) may hold one for a moment.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 8_192;

/// The page size of a new database, in bytes. Most turns write one page that
/// no other turn in their group commit shares (the tail of their
/// conversation's index leaf), and each page a commit writes costs two
/// `pwrite` calls, a checksum and a frame in the log whatever its size, then
/// a copy by the checkpointer: larger pages cut the frames for the appended
/// rows and the depth of the B-trees, but every commit also rewrites the
/// last page of each table it appends to, whole. Measured against SQLite's
/// default of 4 KiB (docs/benchmarks.md, sixth round): at 1,000 visitors 8 and
/// 16 KiB stored about a tenth more messages a second and cut the p99 at
/// 7,500 messages a second from 8-10 ms to 5-7; with 100 visitors sending
/// flat out, in small groups, 16 KiB lost a tenth and 8 KiB about 4%.
/// A database keeps the page size it was created with.
const PAGE_SIZE: i64 = 8_192;

impl Store {
    /// Opens (creating if needed) `data_dir/frontdesk.db`, migrates it, and
    /// starts the writer thread.
    pub fn open(data_dir: &Path, cfg: &StoreConfig) -> Result<(Store, WriterGuard), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join("frontdesk.db");
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Takes effect only while the database is empty, so it goes first.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(
            None,
            "synchronous",
            match cfg.synchronous {
                Synchronous::Full => "full",
                Synchronous::Normal => "normal",
            },
        )?;
        // Savepoints' statement journals stay in memory, and recent pages stay
        // cached: both showed up as file I/O in profiles of the writer thread.
        conn.pragma_update(None, "temp_store", "memory")?;
        // Deleted transcripts (forget, retention) are overwritten, not just unlinked.
        conn.pragma_update(None, "secure_delete", "on")?;
        // 8 MiB holds the pages a few thousand conversations in progress
        // write to. A larger cache costs every commit more than it saves:
        // when a B-tree balance renumbers pages it parks one, for a moment,
        // at the page of the 1 GiB lock byte, and a commit that follows
        // scans the whole page cache to drop pages past the end of a smaller
        // database (at 64 MiB that was a sixth of the writer's time at 4,200
        // messages a second).
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // Checkpoints run on their own thread (`checkpointer`): run by the
        // writer after a commit, each one held up every commit behind it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // When the log starts over, its file is cut back to the limit.
        let wal_max_bytes = i64::from(cfg.wal_max_mib) * 1024 * 1024;
        conn.pragma_update(None, "journal_size_limit", wal_max_bytes)?;
        schema::migrate(&mut conn)?;
        conn.pragma_update(None, "foreign_keys", "on")?;

        let checkpoints = Connection::open(&path)?;
        checkpoints.busy_timeout(BUSY_TIMEOUT)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let restart = Arc::new(AtomicBool::new(false));
        let wal_max_pages =
            wal_max_bytes / conn.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0))?;
        let wanted = restart.clone();
        let checkpoint_thread = std::thread::Builder::new()
            .name("frontdesk-checkpoint".into())
            .spawn(move || checkpointer(checkpoints, stopped, wal_max_pages, &wanted))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;

        let (tx, rx) = mpsc::channel::<Job>(4096);
        let max_batch = cfg.max_batch;
        let commit_delay = std::time::Duration::from_micros(cfg.commit_delay_us.into());
        let stats = Arc::new(WriterStats::default());
        let measured = stats.clone();
        let thread = std::thread::Builder::new()
            .name("frontdesk-store".into())
            .spawn(move || {
                writer(&conn, rx, max_batch, commit_delay, &restart, &measured);
                // Every handle is gone: stop checkpointing beside the writer,
                // then checkpoint everything so the database file stands alone.
                drop(stop);
                let _ = checkpoint_thread.join();
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
            })
            .map_err(|source| StoreError::Io { path, source })?;
        Ok((
            Store { jobs: tx, stats },
            WriterGuard {
                thread: Some(thread),
            },
        ))
    }

    /// What the writer has measured of its commits.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Runs `f` on the writer's connection inside the next group commit and
    /// returns its result once the commit is durable.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(move |w| match w.count_named() {
            // The counts belong to turns before this job: failing to write
            // them fails the whole group.
            Err(e) => (Err(e), true),
            Ok(()) => (in_savepoint(w.conn, f), false),
        })
        .await
    }

    /// Like [`Store::run`], without the savepoint that isolates a failing job
    /// from the rest of its batch, for hot jobs whose only expected failure
    /// comes before they write anything. `f` sets its flag once it has
    /// written; a failure after that rolls back the whole batch, and every
    /// job in it reports the failure (nothing in it is acknowledged).
    async fn run_unguarded<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriterConnection<'_>, &mut bool) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(move |w| {
            let mut wrote = false;
            let result = f(w, &mut wrote);
            let torn = wrote && result.is_err();
            (result, torn)
        })
        .await
    }

    async fn submit<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriterConnection<'_>) -> (Result<T, StoreError>, bool) + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |w| {
            let (result, torn) = f(w);
            let done: Completion = Box::new(move |commit: Result<(), String>| {
                let out = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Schema(format!("commit failed: {e}"))),
                };
                let _ = tx.send(out);
            });
            Ran { done, torn }
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Creates a conversation.
    pub async fn create_conversation(
        &self,
        id: String,
        resume_hash: String,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            let now = now_ms();
            exec(
                c,
                "INSERT INTO conversations (id, resume_hash, state, context, created_at, updated_at)
                 VALUES (?1, ?2, 'bot', '{}', ?3, ?3)",
                (&id, &resume_hash, now),
            )?;
            Ok(())
        })
        .await
    }

    /// Loads a conversation and its history.
    pub async fn load_conversation(
        &self,
        id: String,
    ) -> Result<Option<StoredConversation>, StoreError> {
        self.run(move |c| load_conversation(c, &id)).await
    }

    /// Stores one turn: the visitor's message (if any) and the bot's reply (if
    /// any), and updates the conversation's state and engine context. A
    /// message id already stored in this conversation is not stored again and
    /// nothing else of the turn is applied.
    pub async fn store_turn(&self, turn: Turn) -> Result<TurnOutcome, StoreError> {
        // Turns are most of the writes: they skip the per-job savepoint. The
        // first statement is the only one expected to fail (a conversation
        // deleted meanwhile), and it leaves nothing behind when it does.
        self.run_unguarded(move |w, wrote| store_turn(w, &turn, wrote))
            .await
    }

    /// Records whether an answer helped. Unknown answers are refused.
    pub async fn store_feedback(
        &self,
        conversation_id: String,
        answer_id: String,
        helpful: bool,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            let known: Option<String> = c
                .query_row(
                    "SELECT answer_id FROM decisions WHERE answer_id = ?1 AND conversation_id = ?2",
                    (&answer_id, &conversation_id),
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_none() {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO feedback (answer_id, conversation_id, helpful, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(answer_id) DO UPDATE SET helpful = excluded.helpful, created_at = excluded.created_at",
                (&answer_id, &conversation_id, helpful, now_ms()),
            )?;
            Ok(true)
        })
        .await
    }

    /// Records the visitor's 1-5 rating of the conversation.
    pub async fn store_rating(&self, conversation_id: String, score: u8) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                "UPDATE conversations SET rating = ?2, updated_at = ?3 WHERE id = ?1",
                (&conversation_id, score, now_ms()),
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes one conversation and everything stored with it (messages,
    /// decisions, feedback). Returns whether it existed.
    pub async fn forget(&self, conversation_id: String) -> Result<bool, StoreError> {
        self.run(move |c| delete_conversation(c, &conversation_id))
            .await
    }

    /// Deletes conversations not updated since `before_ms`, with everything
    /// stored with them, and offline tickets older than that. Returns how
    /// many conversations.
    pub async fn purge_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.run(move |c| {
            let ids: Vec<String> = c
                .prepare_cached("SELECT id FROM conversations WHERE updated_at < ?1")?
                .query_map([before_ms], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &ids {
                delete_conversation(c, id)?;
            }
            c.execute("DELETE FROM tickets WHERE created_at < ?1", [before_ms])?;
            Ok(ids.len())
        })
        .await
    }

    /// The conversation's place in the queue (1 = next), if it is queued.
    pub async fn queue_position(&self, conversation_id: String) -> Result<Option<u32>, StoreError> {
        self.run(move |c| Ok(queue_position(c, &conversation_id)?))
            .await
    }

    /// Closes a conversation and decides its outcome from what happened in it.
    pub async fn close_conversation(&self, conversation_id: String) -> Result<String, StoreError> {
        self.run(move |c| close(c, &conversation_id, "visitor"))
            .await
    }

    /// Closes conversations with the bot that have been idle since
    /// `before_ms`; returns each one's id and outcome.
    pub async fn close_idle(&self, before_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.run(move |c| {
            // `updated_at` may lag behind the last message (turns that change
            // nothing in the row leave it), so the messages have the last word.
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM conversations c WHERE state = 'bot' AND updated_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM messages m
                                     WHERE m.seq = (SELECT last_seq FROM chains
                                                    WHERE conversation_id = c.id)
                                     AND m.created_at >= ?1)
                     LIMIT 10000",
                )?
                .query_map([before_ms], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let outcome = close(c, &id, "idle")?;
                out.push((id, outcome));
            }
            Ok(out)
        })
        .await
    }

    /// Reopens a conversation that closed for idleness after `since_ms`,
    /// clearing its outcome, which is decided again when it next closes.
    /// Returns whether it was reopened.
    pub async fn reopen(&self, conversation_id: String, since_ms: i64) -> Result<bool, StoreError> {
        self.run(move |c| {
            let now = now_ms();
            let n = exec(
                c,
                "UPDATE conversations SET state = 'bot', outcome = NULL, closed_at = NULL, closed_by = NULL,
                        updated_at = ?3
                 WHERE id = ?1 AND state = 'closed' AND closed_by = 'idle' AND closed_at >= ?2",
                (&conversation_id, since_ms, now),
            )?;
            if n > 0 {
                append_message(
                    c,
                    &conversation_id,
                    "INSERT INTO messages (conversation_id, role, text, created_at, prev_seq)
                     VALUES (?1, 'system', 'conversation reopened', ?2, ?3)",
                    &[&conversation_id, &now],
                )?;
            }
            Ok(n > 0)
        })
        .await
    }
}

/// The last message of a conversation (none when it has none yet); an error
/// when the conversation does not exist (a message for it must not be stored).
/// The writer's memory answers for a conversation it has linked a message to
/// (`known::last_seq`); the database for the rest.
fn last_seq(c: &Connection, conversation_id: &str) -> Result<Option<i64>, StoreError> {
    last_seq_with(
        &mut *c.prepare_cached(Hot::LastSeq.sql())?,
        c,
        conversation_id,
    )
}

/// [`last_seq`] with its statement given.
fn last_seq_with(
    stmt: &mut Statement<'_>,
    c: &Connection,
    conversation_id: &str,
) -> Result<Option<i64>, StoreError> {
    if let Some(seq) = known::last_seq(conversation_id) {
        return Ok(Some(seq));
    }
    let last = stmt.query_row([conversation_id], |r| r.get(0)).optional()?;
    if last.is_some() {
        return Ok(last);
    }
    // No message yet: the conversation itself must exist.
    c.prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?
        .query_row([conversation_id], |_| Ok(None))
        .optional()?
        .ok_or_else(|| StoreError::NoConversation(conversation_id.to_string()))
}

/// The decisions made in `[from, to)`, as the half-open range of their
/// rowids. The writer stores decisions in the order it makes them, never
/// with a time before the last one's ([`WriterConnection::decided_at`]), so
/// their times rise with their rowids and each bound is found by bisection,
/// a few dozen lookups by rowid, where an index on the time would cost every
/// group commit pages of its own (migration 8). Rows stored before that
/// version keep their times, which a clock set back may have left out of
/// order; a query can check the time as well, to keep those out of a range.
pub fn decision_rowids(c: &Connection, from: i64, to: i64) -> rusqlite::Result<(i64, i64)> {
    let bounds = c
        .prepare_cached("SELECT MIN(rowid), MAX(rowid) FROM decisions")?
        .query_row([], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
    let (Some(first), Some(last)) = bounds else {
        return Ok((0, 0));
    };
    let start = first_decided_at_or_after(c, from, first, last + 1)?;
    let end = first_decided_at_or_after(c, to.max(from), start, last + 1)?;
    Ok((start, end))
}

/// The lowest rowid in `[lo, hi)` at or after which every decision was made
/// at `at` or later, given that every decision below `lo` was made before it
/// and every one from `hi` on at or after it.
fn first_decided_at_or_after(
    c: &Connection,
    at: i64,
    mut lo: i64,
    mut hi: i64,
) -> rusqlite::Result<i64> {
    let mut next = c.prepare_cached(
        "SELECT rowid, created_at FROM decisions WHERE rowid >= ?1 ORDER BY rowid LIMIT 1",
    )?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match next
            .query_row([mid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .optional()?
        {
            // That row and every one before it were made before `at`.
            Some((row, t)) if t < at => lo = (row + 1).min(hi),
            // No row from `mid` up to this one was made before it.
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Makes the message just inserted its conversation's last; `prev` is the
/// last before it, as [`last_seq`] gave it.
fn link_last(c: &Connection, conversation_id: &str, prev: Option<i64>) -> Result<(), StoreError> {
    link_last_with(
        &mut *c.prepare_cached(Hot::link_last(prev).sql())?,
        conversation_id,
        c.last_insert_rowid(),
    )
}

/// [`link_last`] with its statement ([`Hot::link_last`]) and the message
/// given; the writer remembers the message as the conversation's last.
fn link_last_with(
    stmt: &mut Statement<'_>,
    conversation_id: &str,
    seq: i64,
) -> Result<(), StoreError> {
    stmt.execute((conversation_id, seq))?;
    known::linked(conversation_id, seq);
    Ok(())
}

/// Stores a message at the end of its conversation's chain (migration 6):
/// `insert` is an `INSERT INTO messages` whose last parameter is `prev_seq`,
/// `params` are the ones before it. Every message is stored this way (the
/// hot path of `store_turn` spells the same three steps out), so every chain
/// is whole. No trigger does it: a trigger makes SQLite copy each page an
/// insert changes into a statement journal first, which cost the writer more
/// than the lookups.
fn append_message(
    c: &Connection,
    conversation_id: &str,
    insert: &str,
    params: &[&dyn ToSql],
) -> Result<(), StoreError> {
    let prev = last_seq(c, conversation_id)?;
    let mut all = params.to_vec();
    all.push(&prev);
    exec(c, insert, rusqlite::params_from_iter(all))?;
    link_last(c, conversation_id, prev)
}

/// Deletes a conversation and everything stored with it: its messages and
/// their decisions (found through the conversation's chain), then the
/// conversation, whose foreign keys take its feedback, notes and tickets.
/// Returns whether it existed.
fn delete_conversation(c: &Connection, id: &str) -> Result<bool, StoreError> {
    exec(
        c,
        chain!(
            "DELETE FROM decisions WHERE answer_id IN
                 (SELECT m.answer_id FROM chain JOIN messages m ON m.seq = chain.seq
                  WHERE m.answer_id IS NOT NULL
                  UNION ALL
                  SELECT m.reply_answer_id FROM chain JOIN messages m ON m.seq = chain.seq
                  WHERE m.reply_answer_id IS NOT NULL)"
        ),
        [id],
    )?;
    exec(
        c,
        chain!("DELETE FROM messages WHERE seq IN (SELECT seq FROM chain)"),
        [id],
    )?;
    exec(c, "DELETE FROM chains WHERE conversation_id = ?1", [id])?;
    known::forget(id);
    known::forget_contents();
    Ok(exec(c, "DELETE FROM conversations WHERE id = ?1", [id])? > 0)
}

/// The conversation's place in the queue: sensitive first, then by longest wait.
fn queue_position(c: &Connection, id: &str) -> rusqlite::Result<Option<u32>> {
    let pos: Option<i64> = c
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM conversations o WHERE o.state = 'queued'
                     AND (o.priority > c.priority
                          OR (o.priority = c.priority AND (o.queued_at < c.queued_at
                              OR (o.queued_at = c.queued_at AND o.id < c.id))))) + 1
             FROM conversations c WHERE c.id = ?1 AND c.state = 'queued'",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(pos.map(|p| p as u32))
}

/// Closes a conversation and decides its outcome from what happened in it:
/// escalated if it was ever escalated (queued, or offered a ticket when nobody
/// could take it); deflected if the bot answered a question (small talk and
/// answers the visitor marked not helpful do not count) and no person wrote;
/// unanswered if the bot only fell back or its answers did not help;
/// otherwise no question was asked.
fn close(c: &Connection, conversation_id: &str, closed_by: &str) -> Result<String, StoreError> {
    let (reason, answers, fallbacks): (Option<String>, i64, i64) = c.query_row(
        chain!("SELECT escalation_reason,
                (SELECT COUNT(*) FROM chain JOIN messages m ON m.seq = chain.seq
                 JOIN decisions d ON d.answer_id = COALESCE(m.reply_answer_id, m.answer_id)
                 JOIN decision_contents k ON k.id = d.content_id
                 WHERE k.kind = 'answer' AND k.smalltalk = 0
                 AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.answer_id = d.answer_id AND f.helpful = 0)),
                (SELECT COUNT(*) FROM chain JOIN messages m ON m.seq = chain.seq
                 JOIN decisions d ON d.answer_id = COALESCE(m.reply_answer_id, m.answer_id)
                 JOIN decision_contents k ON k.id = d.content_id
                 WHERE k.kind = 'fallback')
         FROM conversations WHERE id = ?1"),
        [conversation_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let outcome = if reason.is_some() {
        "escalated"
    } else if answers > 0 {
        "deflected"
    } else if fallbacks > 0 {
        "unanswered"
    } else {
        "no_question"
    };
    let now = now_ms();
    c.execute(
        "UPDATE conversations SET state = 'closed', outcome = ?2, closed_at = ?3, updated_at = ?3, closed_by = ?4
         WHERE id = ?1",
        (conversation_id, outcome, now, closed_by),
    )?;
    append_message(
        c,
        conversation_id,
        "INSERT INTO messages (conversation_id, role, text, created_at, prev_seq)
         VALUES (?1, 'system', 'conversation closed', ?2, ?3)",
        &[&conversation_id, &now],
    )?;
    Ok(outcome.to_string())
}

/// A read-only connection for reports (statistics, content gaps): it reads
/// a consistent snapshot beside the writer without holding it up.
#[derive(Clone)]
pub struct Reader {
    conn: std::sync::Arc<std::sync::Mutex<Connection>>,
}

impl Reader {
    /// Opens `data_dir/frontdesk.db`, which must exist, for reading.
    pub fn open(data_dir: &Path) -> Result<Reader, StoreError> {
        let path = data_dir.join("frontdesk.db");
        if !path.exists() {
            return Err(StoreError::Schema(format!(
                "no database at {}; has frontdesk served from this data directory?",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < schema::latest() {
            return Err(StoreError::Schema(format!(
                "the database in {} is at schema version {version}; run `frontdesk serve` once to upgrade it",
                data_dir.display()
            )));
        }
        Ok(Reader {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection (blocking; call from a blocking context).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().expect("reader lock");
        f(&conn)
    }

    /// Runs `f` on the connection on tokio's blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.with(f))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// A conversation as stored.
#[derive(Debug, Clone)]
pub struct StoredConversation {
    pub id: String,
    pub resume_hash: String,
    pub state: String,
    pub context: String,
    pub history: Vec<HistoryEntry>,
}

/// The bot's side of a turn.
#[derive(Debug, Clone)]
pub struct BotReply {
    pub answer_id: String,
    pub kind: crate::engine::Kind,
    pub text: String,
    pub source: Option<crate::engine::Source>,
    /// The source and the quick replies as JSON.
    pub source_json: Option<std::sync::Arc<str>>,
    pub quick_replies_json: std::sync::Arc<str>,
    pub score: f32,
    pub escalation: Option<crate::engine::EscalationReason>,
    /// The explanation as JSON, packed ([`packed::pack`]).
    pub explanation: std::sync::Arc<[u8]>,
    /// Answered small talk (a greeting, thanks), not a question.
    pub smalltalk: bool,
}

/// One turn of a conversation to store atomically.
#[derive(Debug, Clone)]
pub struct Turn {
    pub conversation_id: String,
    /// The visitor's message id and (redacted) text.
    pub visitor: Option<(String, String)>,
    pub reply: Option<BotReply>,
    /// New conversation state, if it changes.
    pub state: Option<&'static str>,
    /// The engine context after the turn, as JSON, when the conversation's
    /// row is to be written: `None` leaves the row (context and
    /// `updated_at`) as it is, unless the state changes or the turn escalates.
    pub context: Option<String>,
}

/// What became of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnOutcome {
    /// Stored. A conversation that is now queued learns its place from the
    /// queue broadcast.
    Stored,
    /// The visitor's message id was already stored; nothing was written.
    Duplicate,
}

/// Runs a statement through the connection's statement cache: the hot paths
/// run the same few statements thousands of times a second.
fn exec(c: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    exec(conn, "SAVEPOINT job", [])?;
    match f(conn) {
        Ok(v) => {
            exec(conn, "RELEASE job", [])?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            known::forget_all();
            Err(e)
        }
    }
}

/// Marks the calling thread as a batch thread (`yield_on_wakeup(true)`): it
/// gets its share of the CPU, but waking up does not preempt a running
/// thread; or as a normal one again (`false`). The checkpointer is always a
/// batch thread. The writer is one while it is saturated (see [`writer`]):
/// woken by the first job of a group, or by its sync's completion, it would
/// otherwise interrupt the thread producing the jobs at once and commit
/// groups of a few dozen, paying a commit's page writes for each; letting
/// the producer finish its turn makes the groups several times larger
/// (docs/benchmarks.md). Below saturation the writer is a normal thread, so
/// that the replies waiting for its commit are not also kept waiting for
/// the producer's turn to end.
fn yield_on_wakeup(batch: bool) {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        let policy = if batch {
            libc::SCHED_BATCH
        } else {
            libc::SCHED_OTHER
        };
        // SAFETY: pthread_self() is the calling thread, and param outlives the call.
        let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) };
        if rc != 0 {
            tracing::debug!(error = rc, batch, "the thread keeps its scheduling policy");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = batch;
}

/// How often committed pages are copied from the WAL into the database file.
/// A page rewritten by many commits in between is copied once, so a longer
/// interval copies less; but each checkpoint ends by syncing the database
/// file, and the commits' own WAL syncs queue behind that on the same disk, so
/// the more a checkpoint has to sync, the longer the commits behind it wait.
/// At 4,200 messages a second, a checkpoint every 100 ms took up to 22 ms and
/// a commit up to 12 ms (p99 of replies 11-16 ms); every 20 ms, each one
/// copies a fifth as much and replies' p99 was 6-7 ms, for about 5 µs more of
/// the checkpointer's CPU per message (docs/benchmarks.md).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// How long the checkpointer waits before asking the writer again for a WAL
/// restart that a reader held off.
const RESTART_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Copies committed pages from the WAL into the database file on its own
/// connection, beside the writer: a passive checkpoint takes no lock a commit
/// needs, so commits never wait for one.
///
/// Copying alone never lets the WAL start over while commits keep coming:
/// it restarts only once every frame in it is copied and no commit is under
/// way, and a checkpoint on another connection that waits for that loses the
/// race to the writer, which takes the lock again right after each commit
/// (under sustained load the file grew past a gigabyte). So once the WAL
/// passes `wal_max_pages`, this thread copies what it can and asks the
/// writer, which restarts it between two groups ([`restart_wal`]).
/// Stops when `stop`'s sender is dropped.
fn checkpointer(
    conn: Connection,
    stop: std::sync::mpsc::Receiver<()>,
    wal_max_pages: i64,
    restart: &AtomicBool,
) {
    yield_on_wakeup(true);
    let checkpoint = || -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
    };
    let mut asked: Option<std::time::Instant> = None;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        match checkpoint() {
            Ok(pages) if pages >= wal_max_pages => {
                // Copy what came in during the first pass too, so that the
                // writer's restart has only its last moments left to copy.
                if let Err(e) = checkpoint() {
                    tracing::warn!(error = %e, "checkpoint failed; retrying shortly");
                }
                // A restart a reader held off is asked for again after
                // RESTART_RETRY, not at every checkpoint.
                if asked.is_none_or(|t| t.elapsed() >= RESTART_RETRY) {
                    restart.store(true, Ordering::Relaxed);
                    asked = Some(std::time::Instant::now());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint failed; retrying shortly"),
        }
    }
}

/// Starts the WAL over, on the writer's connection between two groups: the
/// frames not yet copied are copied (the checkpointer has just copied nearly
/// all), and the next commit writes from the start of the file, which is cut
/// back to `journal_size_limit`. A reader still on old frames (a long report)
/// is waited for 5 ms at most; then the restart is left to the checkpointer's
/// next request, so a long read costs commits at most 5 ms every
/// [`RESTART_RETRY`].
fn restart_wal(conn: &Connection, stats: &WriterStats) {
    let started = std::time::Instant::now();
    let _ = conn.busy_timeout(std::time::Duration::from_millis(5));
    let result = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    let took = started.elapsed();
    stats.wal_restart_seconds.observe(took.as_secs_f64());
    let took_ms = took.as_millis() as u64;
    match result {
        Ok(0) => tracing::debug!(took_ms, "WAL started over"),
        Ok(_) => tracing::debug!(took_ms, "a reader holds the WAL; it starts over later"),
        Err(e) => tracing::warn!(error = %e, "WAL restart failed; retrying later"),
    }
}

/// Moves the jobs already queued into `batch`, up to `max_batch` in all.
fn take_queued(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max_batch: usize) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Jobs a second from which the writer lets a group wait for more: below
/// it, groups are small because turns are few, and each is committed as
/// soon as it is seen.
const BUSY_JOBS_PER_SECOND: f64 = 8_000.0;

/// A group this large (or `max_batch`, if smaller) is committed without
/// waiting: a commit's own cost (the log's header and the tails of the
/// tables rewritten, the sync) is then a small share of the group's.
const GROUP_WORTH_A_COMMIT: usize = 32;

/// How often a lingering writer looks for new jobs.
const LINGER_STEP: std::time::Duration = std::time::Duration::from_micros(250);

/// When the writer lets a small group wait for more jobs: only while jobs
/// arrive at [`BUSY_JOBS_PER_SECOND`] or more, judged by the last group's
/// size over the time since the group before it was collected. The rate,
/// not the group's size, decides, because how many jobs queue up during a
/// commit depends on how long the disk takes to sync.
struct Pace {
    delay: std::time::Duration,
    /// The size of a group worth a commit by itself.
    worth: usize,
    last_collected: std::time::Instant,
    last_group: usize,
}

impl Pace {
    fn new(delay: std::time::Duration, worth: usize) -> Pace {
        Pace {
            delay,
            worth,
            last_collected: std::time::Instant::now(),
            last_group: 0,
        }
    }

    /// The moment until which a group of `len` jobs, collected at `now`,
    /// waits for more; `None` to commit it now.
    fn linger_until(&self, len: usize, now: std::time::Instant) -> Option<std::time::Instant> {
        let cycle = now.duration_since(self.last_collected).as_secs_f64();
        let busy = self.last_group as f64 >= BUSY_JOBS_PER_SECOND * cycle;
        (busy && !self.delay.is_zero() && len < self.worth).then(|| now + self.delay)
    }

    /// Notes a group of `len` jobs, complete at `now`.
    fn collected(&mut self, len: usize, now: std::time::Instant) {
        self.last_collected = now;
        self.last_group = len;
    }
}

fn writer(
    conn: &Connection,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    commit_delay: std::time::Duration,
    restart: &AtomicBool,
    stats: &WriterStats,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut pace = Pace::new(commit_delay, GROUP_WORTH_A_COMMIT.min(max_batch));
    let mut saturated = false;
    let mut data_version = None;
    let mut w = WriterConnection::new(conn);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        take_queued(&mut rx, &mut batch, max_batch);
        // Saturated: a group worth its commit was waiting without any
        // lingering. Until that changes, the writer stops preempting the
        // workers (see `yield_on_wakeup`).
        let full = batch.len() >= pace.worth;
        if full != saturated {
            saturated = full;
            yield_on_wakeup(saturated);
        }
        if let Some(until) = pace.linger_until(batch.len(), std::time::Instant::now()) {
            // Busy: more turns are on their way, and a commit's own cost
            // (its sync, the tables' tails) is that of 15-20 turns' statements
            // (docs/benchmarks.md, ninth round). Let them join this one.
            loop {
                let now = std::time::Instant::now();
                if now >= until || batch.len() >= pace.worth {
                    break;
                }
                std::thread::sleep((until - now).min(LINGER_STEP));
                take_queued(&mut rx, &mut batch, max_batch);
            }
        }
        let started = std::time::Instant::now();
        pace.collected(batch.len(), started);
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        // A commit by another process (`frontdesk forget`, say) may have
        // changed what the writer remembers of conversations.
        if begun.is_ok() {
            let version = conn
                .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
                .ok();
            if version.is_none() || version != data_version {
                known::forget_all();
            }
            data_version = version;
        }
        let mut completions = Vec::with_capacity(batch.len());
        let mut torn = false;
        for job in batch.drain(..) {
            let ran = job(&mut w);
            torn |= ran.torn;
            completions.push(ran.done);
        }
        tracing::trace!(jobs = completions.len(), "group commit");
        let commit = if torn {
            Err("a write failed half-way; its batch was rolled back".to_string())
        } else {
            // Counted even when the group has no transaction (BEGIN failed,
            // so each statement committed on its own): the counts then
            // match the decisions that were stored all the same.
            let counted = w.count_named();
            begun
                .map_err(StoreError::from)
                .and(counted)
                .and_then(|()| Ok(conn.execute_batch("COMMIT")?))
                .map_err(|e| e.to_string())
        };
        // Counts of a group rolled back are gone with it.
        w.named.clear();
        if let Err(e) = &commit {
            tracing::error!(error = %e, jobs = completions.len(), "commit failed; nothing in this batch is acknowledged");
            let _ = conn.execute_batch("ROLLBACK");
            known::forget_all();
        }
        stats
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        stats.group_jobs.observe(completions.len() as f64);
        for done in completions {
            done(commit.clone());
        }
        if restart.swap(false, Ordering::Relaxed) {
            restart_wal(conn, stats);
        }
    }
}

fn load_conversation(c: &Connection, id: &str) -> Result<Option<StoredConversation>, StoreError> {
    let row = c
        .query_row(
            "SELECT id, resume_hash, state, context FROM conversations WHERE id = ?1",
            [id],
            |r| {
                Ok(StoredConversation {
                    id: r.get(0)?,
                    resume_hash: r.get(1)?,
                    state: r.get(2)?,
                    context: r.get(3)?,
                    history: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut conv) = row else {
        return Ok(None);
    };
    conv.history = history(c, id)?;
    Ok(Some(conv))
}

/// A conversation's messages in order, with the bot's decisions. A row
/// holding a turn (a visitor's message and the bot's reply to it) gives two
/// entries: the message, then the reply, whose text is in the row if it was
/// stored before migration 11 and in the decision's content after it.
fn history(c: &Connection, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut stmt = c.prepare_cached(
        chain!("SELECT m.role, m.text, m.created_at, m.client_id, m.answer_id, dk.kind, dk.source_json, dk.quick_replies, m.author,
                COALESCE(m.reply_text, rk.text), m.reply_answer_id, rk.kind, rk.source_json, rk.quick_replies
         FROM chain JOIN messages m ON m.seq = chain.seq
         LEFT JOIN decisions d ON d.answer_id = m.answer_id
         LEFT JOIN decision_contents dk ON dk.id = d.content_id
         LEFT JOIN decisions r ON r.answer_id = m.reply_answer_id
         LEFT JOIN decision_contents rk ON rk.id = r.content_id
         ORDER BY m.seq"),
    )?;
    let mut rows = stmt.query([id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let role: String = r.get(0)?;
        let at: i64 = r.get(2)?;
        let (kind, source, quick_replies) = decision_columns(r, 5)?;
        out.push(HistoryEntry {
            // Only the visitor's own message ids mean anything to the visitor.
            id: if role == "visitor" { r.get(3)? } else { None },
            role,
            text: r.get(1)?,
            at,
            answer_id: r.get(4)?,
            kind,
            source,
            quick_replies,
            name: r.get(8)?,
        });
        if let Some(text) = r.get::<_, Option<String>>(9)? {
            let (kind, source, quick_replies) = decision_columns(r, 11)?;
            out.push(HistoryEntry {
                id: None,
                role: "bot".into(),
                text,
                at,
                answer_id: r.get(10)?,
                kind,
                source,
                quick_replies,
                name: None,
            });
        }
    }
    Ok(out)
}

/// A decision's kind, source and quick replies, from its three columns
/// starting at `first` (all null when the row has no decision).
fn decision_columns(
    r: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<(
    Option<crate::engine::Kind>,
    Option<crate::engine::Source>,
    Vec<crate::engine::QuickReply>,
)> {
    let kind: Option<String> = r.get(first)?;
    let source: Option<String> = r.get(first + 1)?;
    let quick: Option<String> = r.get(first + 2)?;
    Ok((
        kind.and_then(|k| serde_json::from_value(serde_json::Value::String(k)).ok()),
        source.and_then(|s| serde_json::from_str(&s).ok()),
        quick
            .and_then(|q| serde_json::from_str(&q).ok())
            .unwrap_or_default(),
    ))
}

/// Stores a turn. `wrote` is set after the first write, which is the one that
/// fails if the conversation is gone; the ones after it are not expected to.
fn store_turn(
    w: &mut WriterConnection<'_>,
    t: &Turn,
    wrote: &mut bool,
) -> Result<TurnOutcome, StoreError> {
    let c = w.conn;
    let now = now_ms();
    if let Some((client_id, text)) = &t.visitor {
        // The reply, if any, goes in the same row (migration 5), its text
        // with its decision's content (migration 11).
        let reply_answer_id = t.reply.as_ref().map(|r| &r.answer_id);
        // `append_message`'s steps, the insert first among the writes. The
        // conversation must exist before its set of ids notes this one.
        let prev = last_seq_with(w.hot(Hot::LastSeq)?, c, &t.conversation_id)?;
        if !known::first_time(c, &t.conversation_id, client_id)? {
            return Ok(TurnOutcome::Duplicate);
        }
        w.hot(Hot::InsertVisitorMessage)?.execute((
            &t.conversation_id,
            client_id,
            text,
            now,
            reply_answer_id,
            prev,
        ))?;
        *wrote = true;
        link_last_with(
            w.hot(Hot::link_last(prev))?,
            &t.conversation_id,
            c.last_insert_rowid(),
        )?;
    }
    let visitor_seq = t.visitor.as_ref().map(|_| c.last_insert_rowid());
    if let Some(r) = &t.reply {
        if t.visitor.is_none() {
            // A reply to no message has a row of its own. It goes before the
            // decision: a deleted conversation fails the turn here, before
            // anything is written (decisions are not checked).
            let prev = last_seq(c, &t.conversation_id)?;
            exec(
                c,
                "INSERT INTO messages (conversation_id, role, text, created_at, answer_id, prev_seq)
                 VALUES (?1, 'bot', ?2, ?3, ?4, ?5)",
                (&t.conversation_id, &r.text, now, &r.answer_id, prev),
            )?;
            *wrote = true;
            link_last(c, &t.conversation_id, prev)?;
        }
        // A remembered decision's content is most likely stored already
        // (migration 10). Counted with the group's other decisions naming
        // it, it is not deleted while the writer remembers it (deleting a
        // conversation forgets them all).
        // Only a content whose explanation is shared (held by the engine's
        // decision cache) can come again, so only such a one is counted
        // and remembered when it is first stored: a text the engine decides
        // afresh costs no count and no memory.
        let content_id = match known::content(r) {
            Some(id) => {
                w.named.push(id);
                id
            }
            None => {
                w.hot(Hot::InsertContent)?.execute(rusqlite::params![
                    r.kind.as_str(),
                    r.source.as_ref().map(|s| s.kind.as_str()),
                    r.source.as_ref().map(|s| s.id.as_str()),
                    r.source_json.as_deref(),
                    &*r.quick_replies_json,
                    r.score as f64,
                    r.escalation.map(|e| e.as_str()),
                    &*r.explanation,
                    r.smalltalk,
                    r.text,
                ])?;
                let id = c.last_insert_rowid();
                if std::sync::Arc::strong_count(&r.explanation) > 1 {
                    w.hot(Hot::CountNewContent)?.execute([id])?;
                    known::stored_content(r, id);
                }
                id
            }
        };
        let decided_at = w.decided_at(now)?;
        w.hot(Hot::InsertDecision)?.execute((
            &r.answer_id,
            &t.conversation_id,
            visitor_seq,
            content_id,
            decided_at,
        ))?;
    }
    let reason = t
        .reply
        .as_ref()
        .and_then(|r| r.escalation)
        .map(|e| e.as_str());
    if t.context.is_none() && t.state.is_none() && reason.is_none() {
        // Most turns change nothing in the conversation's row; leaving it
        // alone saves a random page in every group commit.
        return Ok(TurnOutcome::Stored);
    }
    if t.state.is_none() && reason.is_none() {
        // Only the context changed (a slot asked for or filled). Naming the
        // queue's columns would rewrite the conversation's entry in the
        // queue's index with the same values: a page in every group commit.
        exec(
            c,
            "UPDATE conversations SET context = ?2, updated_at = ?3 WHERE id = ?1",
            (&t.conversation_id, &t.context, now),
        )?;
        return Ok(TurnOutcome::Stored);
    }
    exec(
        c,
        "UPDATE conversations SET context = COALESCE(?2, context), updated_at = ?3,
                state = COALESCE(?4, state),
                escalation_reason = COALESCE(escalation_reason, ?5),
                priority = CASE WHEN ?5 = 'sensitive' THEN 1 ELSE priority END,
                queued_at = CASE WHEN ?4 = 'queued' AND queued_at IS NULL THEN ?3 ELSE queued_at END
         WHERE id = ?1",
        (&t.conversation_id, &t.context, now, t.state, reason),
    )?;
    Ok(TurnOutcome::Stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Kind;

    #[test]
    fn ids_are_hex_as_formatting_writes_it() {
        for v in [
            0u64,
            1,
            0xabc,
            0x0193_a7c2_17ff,
            u64::MAX,
            0x9E37_79B9_7F4A_7C15,
        ] {
            let mut s = String::new();
            push_hex(&mut s, v, 16);
            assert_eq!(s, format!("{v:016x}"));
        }
        let mut s = String::new();
        push_hex(&mut s, 0x0193_a7c2_17ff, 12);
        assert_eq!(s, "0193a7c217ff");
        let before = now_ms();
        let id = time_ordered_id("a_");
        let after = now_ms();
        assert_eq!(id.len(), 2 + 12 + 16);
        assert!(id[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let ms = i64::from_str_radix(&id[2..14], 16).unwrap();
        assert!((before..=after).contains(&ms), "{id}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_thread_turns_batch_and_back() {
        std::thread::spawn(|| {
            // SAFETY: sched_getscheduler(0) reads the calling thread's policy.
            let policy = || unsafe { libc::sched_getscheduler(0) };
            assert_eq!(policy(), libc::SCHED_OTHER);
            yield_on_wakeup(true);
            assert_eq!(policy(), libc::SCHED_BATCH);
            yield_on_wakeup(false);
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_small_group_waits_for_more_only_while_jobs_come_fast() {
        use std::time::{Duration, Instant};
        let delay = Duration::from_millis(1);
        let t0 = Instant::now();
        let mut pace = Pace::new(delay, GROUP_WORTH_A_COMMIT);
        // A first job after a quiet spell goes at once.
        pace.collected(1, t0);
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(pace.linger_until(1, t1), None);
        // Ten jobs collected a millisecond after the group before them:
        // 10,000 a second, so the next small group waits.
        pace.collected(10, t1);
        let t2 = t1 + Duration::from_millis(1);
        assert_eq!(pace.linger_until(3, t2), Some(t2 + delay));
        // A group already worth its commit does not.
        assert_eq!(pace.linger_until(GROUP_WORTH_A_COMMIT, t2), None);
        // Ten jobs over 5 ms are 2,000 a second: no waiting.
        pace.collected(10, t2);
        assert_eq!(pace.linger_until(3, t2 + Duration::from_millis(5)), None);
        // Nor with no delay configured, however busy.
        let mut eager = Pace::new(Duration::ZERO, GROUP_WORTH_A_COMMIT);
        eager.collected(100, t0);
        assert_eq!(eager.linger_until(1, t0 + Duration::from_millis(1)), None);
    }

    /// An explanation that packs to about 1,000 bytes: pseudo-random hex,
    /// which LZ4 finds nothing to shorten in.
    fn bulky_explanation() -> std::sync::Arc<[u8]> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let hex: String = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from_digit((x % 16) as u32, 16).unwrap()
            })
            .collect();
        let packed = packed::pack(&hex);
        assert!(packed.len() > 950, "{}", packed.len());
        packed.into()
    }

    /// A turn whose decision has `explanation`, as a remembered decision's
    /// turns share theirs.
    fn turn_sharing(explanation: &std::sync::Arc<[u8]>, conv: &str, id: &str) -> Turn {
        let mut t = turn(conv, id, "hello");
        t.reply.as_mut().unwrap().explanation = explanation.clone();
        t
    }

    /// Decisions whose content is gone.
    const DANGLING: &str =
        "SELECT COUNT(*) FROM decisions d LEFT JOIN decision_contents k ON k.id = d.content_id
         WHERE k.id IS NULL";

    /// Contents and their counts, left.
    const CONTENTS_AND_COUNTS: &str =
        "SELECT (SELECT COUNT(*) FROM decision_contents) + (SELECT COUNT(*) FROM decision_refs)";

    /// The one integer a query returns.
    async fn scalar(store: &Store, sql: &'static str) -> i64 {
        store
            .run(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    /// A store in a new directory, with these conversations created.
    async fn open_with(conversations: &[&str]) -> (tempfile::TempDir, Store, WriterGuard) {
        let dir = tempfile::tempdir().unwrap();
        let (store, guard) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        for id in conversations {
            store
                .create_conversation(id.to_string(), "h".into())
                .await
                .unwrap();
        }
        (dir, store, guard)
    }

    fn turn(conv: &str, id: &str, text: &str) -> Turn {
        Turn {
            conversation_id: conv.into(),
            visitor: Some((id.into(), text.into())),
            reply: Some(BotReply {
                answer_id: format!("a-{id}"),
                kind: Kind::Answer,
                text: format!("re: {text}"),
                source: None,
                source_json: None,
                quick_replies_json: "[]".into(),
                score: 1.0,
                escalation: None,
                explanation: packed::pack("{}").into(),
                smalltalk: false,
            }),
            state: None,
            context: Some("{}".into()),
        }
    }

    #[tokio::test]
    async fn turns_are_stored_once_and_survive_reopening() {
        let (dir, store, guard) = open_with(&["c1"]).await;
        let first = store.store_turn(turn("c1", "m1", "hello")).await.unwrap();
        assert_eq!(first, TurnOutcome::Stored);
        let again = store.store_turn(turn("c1", "m1", "hello")).await.unwrap();
        assert_eq!(again, TurnOutcome::Duplicate);
        drop(store);
        guard.join();

        let (store, guard) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let conv = store.load_conversation("c1".into()).await.unwrap().unwrap();
        let texts: Vec<&str> = conv.history.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(texts, ["hello", "re: hello"]);
        assert_eq!(conv.history[0].role, "visitor");
        assert_eq!(conv.history[0].id.as_deref(), Some("m1"));
        assert_eq!(conv.history[1].role, "bot");
        assert_eq!(conv.history[1].id, None);
        assert_eq!(conv.history[1].kind, Some(Kind::Answer));
        assert_eq!(conv.history[1].answer_id.as_deref(), Some("a-m1"));
        // The turn is one row: the reply sits in the message's own.
        assert_eq!(scalar(&store, "SELECT COUNT(*) FROM messages").await, 1);
        // A new process knows the id from what is stored.
        let again = store.store_turn(turn("c1", "m1", "hello")).await.unwrap();
        assert_eq!(again, TurnOutcome::Duplicate);
        assert_eq!(
            store.store_turn(turn("c1", "m2", "more")).await.unwrap(),
            TurnOutcome::Stored
        );
        drop(store);
        guard.join();
    }

    /// A conversation deleted by another process is not written to: the
    /// writer's memory of its last message goes with the other process's
    /// commit, and the turn fails as it would have without that memory.
    #[tokio::test]
    async fn a_conversation_deleted_by_another_process_takes_no_more_turns() {
        let (dir, store, guard) = open_with(&["c1", "c2"]).await;
        for (conv, id) in [("c1", "m1"), ("c1", "m2"), ("c2", "n1")] {
            assert_eq!(
                store.store_turn(turn(conv, id, "hello")).await.unwrap(),
                TurnOutcome::Stored
            );
        }
        let other = Connection::open(dir.path().join("frontdesk.db")).unwrap();
        other.busy_timeout(BUSY_TIMEOUT).unwrap();
        assert!(delete_conversation(&other, "c1").unwrap());
        drop(other);
        let gone = store.store_turn(turn("c1", "m3", "still there?")).await;
        assert!(
            matches!(gone, Err(StoreError::NoConversation(_))),
            "{gone:?}"
        );
        assert_eq!(
            scalar(
                &store,
                "SELECT COUNT(*) FROM messages WHERE conversation_id = 'c1'"
            )
            .await,
            0
        );
        // The other conversation's chain goes on where it ended.
        store.store_turn(turn("c2", "n2", "more")).await.unwrap();
        let conv = store.load_conversation("c2".into()).await.unwrap().unwrap();
        let texts: Vec<&str> = conv.history.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(texts, ["hello", "re: hello", "more", "re: more"]);
        drop(store);
        guard.join();
    }

    /// A remembered decision made again names the content stored for it,
    /// unless the rest of its content differs; a content lives exactly as
    /// long as a decision names it; and one deleted (by this process or by
    /// another) is stored again when it is needed again.
    #[tokio::test]
    async fn a_decisions_content_is_stored_once_while_decisions_name_it() {
        let (dir, store, guard) = open_with(&["c1", "c2", "c3", "c4"]).await;
        let shared = bulky_explanation();
        let with = |conv: &str, id: &str| turn_sharing(&shared, conv, id);
        for (conv, id) in [("c1", "m1"), ("c2", "n1"), ("c1", "m2")] {
            store.store_turn(with(conv, id)).await.unwrap();
        }
        // The same explanation with other quick replies is another content,
        // and so is one with another reply (the offline message instead of
        // the decision's, say), read back as it was stored.
        let mut elsewhere = with("c2", "n2");
        elsewhere.reply.as_mut().unwrap().text = "We are closed; leave a message.".into();
        store.store_turn(elsewhere).await.unwrap();
        let texts: Vec<String> = store
            .load_conversation("c2".into())
            .await
            .unwrap()
            .unwrap()
            .history
            .into_iter()
            .map(|h| h.text)
            .collect();
        assert_eq!(
            texts,
            [
                "hello",
                "re: hello",
                "hello",
                "We are closed; leave a message."
            ]
        );
        let mut offered = with("c3", "o1");
        offered.reply.as_mut().unwrap().quick_replies_json =
            r#"[{"label":"Talk to a person","value":"human"}]"#.into();
        store.store_turn(offered).await.unwrap();
        let contents = "SELECT COUNT(*) FROM decision_contents";
        let shared_refs = "SELECT refs FROM decision_refs
                           WHERE id = (SELECT content_id FROM decisions WHERE answer_id = 'a-n1')";
        assert_eq!(scalar(&store, contents).await, 3);
        assert_eq!(scalar(&store, shared_refs).await, 3);
        let quick = |conv: &'static str| {
            let store = store.clone();
            async move {
                let conv = store.load_conversation(conv.into()).await.unwrap().unwrap();
                let bot = conv.history.iter().find(|h| h.role == "bot").unwrap();
                (bot.kind, bot.quick_replies.len())
            }
        };
        assert_eq!(quick("c2").await, (Some(Kind::Answer), 0));
        assert_eq!(quick("c3").await, (Some(Kind::Answer), 1));

        // Forgetting c1 keeps the content c2 still names; forgetting c2
        // deletes it, and the one only c2 named.
        assert!(store.forget("c1".into()).await.unwrap());
        assert_eq!(scalar(&store, contents).await, 3);
        assert_eq!(scalar(&store, shared_refs).await, 1);
        assert!(store.forget("c2".into()).await.unwrap());
        assert_eq!(scalar(&store, contents).await, 1);
        assert_eq!(
            scalar(&store, "SELECT COUNT(*) FROM decision_refs").await,
            1
        );

        // Needed again, it is stored again.
        store.store_turn(with("c3", "o2")).await.unwrap();
        assert_eq!(scalar(&store, contents).await, 2);
        assert_eq!(scalar(&store, DANGLING).await, 0);

        // Deleted by another process, too.
        let other = Connection::open(dir.path().join("frontdesk.db")).unwrap();
        other.busy_timeout(BUSY_TIMEOUT).unwrap();
        assert!(delete_conversation(&other, "c3").unwrap());
        drop(other);
        assert_eq!(scalar(&store, contents).await, 0);
        store.store_turn(with("c4", "p1")).await.unwrap();
        assert_eq!(scalar(&store, contents).await, 1);
        assert_eq!(scalar(&store, DANGLING).await, 0);
        assert_eq!(quick("c4").await, (Some(Kind::Answer), 0));

        // A decision made afresh (its explanation held by nothing else)
        // stores its content uncounted, and it goes with its decision.
        store.store_turn(turn("c4", "p2", "other")).await.unwrap();
        assert_eq!(scalar(&store, contents).await, 2);
        assert_eq!(
            scalar(&store, "SELECT COUNT(*) FROM decision_refs").await,
            1
        );
        assert!(store.forget("c4".into()).await.unwrap());
        assert_eq!(scalar(&store, CONTENTS_AND_COUNTS).await, 0);
        drop(store);
        guard.join();
    }

    /// Decisions of one group naming a stored content are counted together,
    /// before a job in the same group deletes one: forgetting the
    /// conversation that first stored it, between turns naming it, keeps it
    /// for them with the right count.
    #[tokio::test]
    async fn a_group_counts_its_decisions_before_a_deletion_in_it() {
        let (_dir, store, guard) = open_with(&["c0", "c1", "c2", "c3"]).await;
        let shared = bulky_explanation();
        let with = |conv: &str, id: &str| turn_sharing(&shared, conv, id);
        store.store_turn(with("c0", "z1")).await.unwrap();
        // Holds the writer, so that what follows is queued for one group.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let hold = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .run(move |_| {
                        held_tx.send(()).unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || held_rx.recv().unwrap())
            .await
            .unwrap();
        let (a, b, forgot, c) = tokio::join!(
            store.store_turn(with("c1", "m1")),
            store.store_turn(with("c2", "n1")),
            store.forget("c0".into()),
            store.store_turn(with("c3", "o1")),
        );
        hold.await.unwrap().unwrap();
        for stored in [a, b, c] {
            assert!(matches!(stored.unwrap(), TurnOutcome::Stored));
        }
        assert!(forgot.unwrap());
        // Every count is the number of decisions naming its content, and
        // every decision's content is there: c1's and c2's decisions name
        // the content c0's stored (counted before c0 went), c3's one of its
        // own (the deletion made the writer forget the stored contents).
        let miscounted = "SELECT COUNT(*) FROM decision_refs r
                          WHERE r.refs != (SELECT COUNT(*) FROM decisions d WHERE d.content_id = r.id)";
        let refs = "SELECT refs FROM decision_refs
                    WHERE id = (SELECT content_id FROM decisions WHERE answer_id = 'a-m1')";
        assert_eq!(scalar(&store, miscounted).await, 0);
        assert_eq!(scalar(&store, DANGLING).await, 0);
        assert_eq!(scalar(&store, refs).await, 2);
        assert_eq!(
            scalar(&store, "SELECT COUNT(*) FROM decision_contents").await,
            2
        );
        for conv in ["c1", "c2", "c3"] {
            assert!(store.forget(conv.into()).await.unwrap());
        }
        assert_eq!(scalar(&store, CONTENTS_AND_COUNTS).await, 0);
        drop(store);
        guard.join();
    }

    /// Every time range, over decisions with equal times and gaps where
    /// rows were deleted, gives the rowids of exactly the decisions made in
    /// it; an empty table gives an empty range.
    #[test]
    fn a_time_range_of_decisions_is_a_range_of_their_rowids() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        assert_eq!(decision_rowids(&conn, 0, 100).unwrap(), (0, 0));
        let times = [10, 20, 20, 20, 30, 40, 40, 55, 60, 70];
        for (i, t) in times.iter().enumerate() {
            conn.execute(
                "INSERT INTO decision_contents (id, kind, explanation) VALUES (?1, 'answer', '{}')",
                [i as i64],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO decisions (answer_id, conversation_id, content_id, created_at)
                 VALUES (?1, 'c', ?2, ?3)",
                (format!("a{i}"), i as i64, t),
            )
            .unwrap();
        }
        // Gaps: the second 20, the 30 and the last row.
        conn.execute_batch("DELETE FROM decisions WHERE answer_id IN ('a2', 'a4', 'a9')")
            .unwrap();
        let stored: Vec<(i64, i64)> = conn
            .prepare("SELECT rowid, created_at FROM decisions ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for from in 0..80 {
            for to in from..80 {
                let (lo, hi) = decision_rowids(&conn, from, to).unwrap();
                let found: Vec<i64> = stored
                    .iter()
                    .filter(|(row, _)| (lo..hi).contains(row))
                    .map(|(row, _)| *row)
                    .collect();
                let made: Vec<i64> = stored
                    .iter()
                    .filter(|(_, t)| (from..to).contains(t))
                    .map(|(row, _)| *row)
                    .collect();
                assert_eq!(found, made, "[{from}, {to}): rowids [{lo}, {hi})");
            }
        }
        // A range given backwards is empty.
        let (lo, hi) = decision_rowids(&conn, 60, 10).unwrap();
        assert!(lo >= hi, "[{lo}, {hi})");
    }

    /// A decision stored after the clock was set back takes the time of the
    /// last one, so that times still rise with rowids.
    #[tokio::test]
    async fn decisions_times_never_go_back() {
        let (_dir, store, guard) = open_with(&["c1"]).await;
        let ahead = now_ms() + 3_600_000;
        store
            .run(move |c| {
                c.execute(
                    "INSERT INTO decision_contents (id, kind, explanation) VALUES (1, 'answer', '{}')",
                    [],
                )?;
                c.execute(
                    "INSERT INTO decisions (answer_id, conversation_id, content_id, created_at)
                     VALUES ('a-before', 'c1', 1, ?1)",
                    [ahead],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        for i in 0..3 {
            let id = format!("m{i}");
            store.store_turn(turn("c1", &id, "hello")).await.unwrap();
        }
        let times: Vec<i64> = store
            .run(|c| {
                Ok(
                    c.prepare("SELECT created_at FROM decisions ORDER BY rowid")?
                        .query_map([], |r| r.get(0))?
                        .collect::<Result<_, _>>()?,
                )
            })
            .await
            .unwrap();
        assert_eq!(times, vec![ahead; 4]);
        // The visitor's messages keep the clock's own time.
        assert!(scalar(&store, "SELECT MAX(created_at) FROM messages").await < ahead);
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn turns_stored_before_and_after_one_row_turns_read_alike() {
        let (_dir, store, guard) = open_with(&["c1"]).await;
        // As turns were stored before migration 5 (the bot's reply in a row
        // of its own), then before migration 11 (the reply's text in the
        // visitor's row, its content without one).
        store
            .run(|c| {
                c.execute_batch(
                    "INSERT INTO messages (seq, conversation_id, client_id, role, text, created_at)
                         VALUES (1, 'c1', 'old', 'visitor', 'before', 1);
                     INSERT INTO decision_contents (id, kind, explanation) VALUES (1, 'fallback', '{}');
                     INSERT INTO decisions (answer_id, conversation_id, message_seq, content_id, created_at)
                         VALUES ('a-old', 'c1', 1, 1, 1);
                     INSERT INTO messages (seq, conversation_id, role, text, created_at, answer_id, prev_seq)
                         VALUES (2, 'c1', 'bot', 're: before', 1, 'a-old', 1);
                     INSERT INTO decision_contents (id, kind, explanation) VALUES (2, 'answer', '{}');
                     INSERT INTO decisions (answer_id, conversation_id, message_seq, content_id, created_at)
                         VALUES ('a-mid', 'c1', 3, 2, 1);
                     INSERT INTO messages (seq, conversation_id, client_id, role, text, created_at,
                                           reply_text, reply_answer_id, prev_seq)
                         VALUES (3, 'c1', 'mid', 'visitor', 'between', 1, 're: between', 'a-mid', 2);
                     INSERT INTO chains (conversation_id, last_seq) VALUES ('c1', 3);",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        store.store_turn(turn("c1", "m1", "after")).await.unwrap();
        let conv = store.load_conversation("c1".into()).await.unwrap().unwrap();
        let entries: Vec<(&str, &str, Option<&str>, Option<Kind>)> = conv
            .history
            .iter()
            .map(|h| {
                (
                    h.role.as_str(),
                    h.text.as_str(),
                    h.answer_id.as_deref(),
                    h.kind,
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("visitor", "before", None, None),
                ("bot", "re: before", Some("a-old"), Some(Kind::Fallback)),
                ("visitor", "between", None, None),
                ("bot", "re: between", Some("a-mid"), Some(Kind::Answer)),
                ("visitor", "after", None, None),
                ("bot", "re: after", Some("a-m1"), Some(Kind::Answer)),
            ]
        );
        // The new turn's reply text is its content's, not its row's.
        assert_eq!(
            scalar(
                &store,
                "SELECT COUNT(*) FROM messages m JOIN decisions d ON d.answer_id = m.reply_answer_id
                 JOIN decision_contents k ON k.id = d.content_id
                 WHERE m.reply_text IS NULL AND k.text = 're: after'"
            )
            .await,
            1
        );
        // Closing counts both kinds of row: the new turn's answer deflects.
        assert_eq!(
            store.close_conversation("c1".into()).await.unwrap(),
            "deflected"
        );
        // Forgetting the conversation deletes both decisions and their contents.
        assert!(store.forget("c1".into()).await.unwrap());
        assert_eq!(
            scalar(
                &store,
                "SELECT (SELECT COUNT(*) FROM decisions) + (SELECT COUNT(*) FROM decision_contents)
                        + (SELECT COUNT(*) FROM decision_refs)"
            )
            .await,
            0
        );
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn a_new_database_gets_large_pages_and_an_old_one_keeps_its_own() {
        let page_size = |db: &Path| {
            Connection::open(db)
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let (dir, store, guard) = open_with(&["c1"]).await;
        store.store_turn(turn("c1", "m1", "hello")).await.unwrap();
        drop(store);
        guard.join();
        assert_eq!(page_size(&dir.path().join("frontdesk.db")), PAGE_SIZE);

        // A database made with SQLite's default pages, as earlier releases did.
        let old = tempfile::tempdir().unwrap();
        let db = old.path().join("frontdesk.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = wal; CREATE TABLE t (x); DROP TABLE t;")
            .unwrap();
        let (store, guard) = Store::open(old.path(), &StoreConfig::default()).unwrap();
        store
            .create_conversation("c1".into(), "h".into())
            .await
            .unwrap();
        store.store_turn(turn("c1", "m1", "hello")).await.unwrap();
        drop(store);
        guard.join();
        assert_eq!(page_size(&db), 4096);
        let (store, guard) = Store::open(old.path(), &StoreConfig::default()).unwrap();
        let conv = store.load_conversation("c1".into()).await.unwrap().unwrap();
        assert_eq!(conv.history.len(), 2);
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn a_failing_job_does_not_undo_its_batch_mates() {
        let (_dir, store, guard) = open_with(&["c1"]).await;
        let bad = store.run(|c| {
            c.execute("INSERT INTO messages (conversation_id, role, text, created_at) VALUES ('c1','visitor','x',0)", [])?;
            c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(())
        });
        let good = store.store_turn(turn("c1", "m1", "kept"));
        let (bad, good) = tokio::join!(bad, good);
        assert!(bad.is_err());
        assert!(good.is_ok());
        let conv = store.load_conversation("c1".into()).await.unwrap().unwrap();
        assert_eq!(conv.history.len(), 2, "{:?}", conv.history);
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn a_turn_for_a_deleted_conversation_fails_alone() {
        let (_dir, store, guard) = open_with(&["c1"]).await;
        // A turn with only the bot's part (a welcome back, say) fails alone too.
        let mut reply_only = turn("nowhere", "m9", "lost");
        reply_only.visitor = None;
        let (gone, gone_reply, kept) = tokio::join!(
            store.store_turn(turn("nowhere", "m0", "lost")),
            store.store_turn(reply_only),
            store.store_turn(turn("c1", "m1", "kept"))
        );
        assert!(
            matches!(gone, Err(StoreError::NoConversation(_))),
            "{gone:?}"
        );
        assert!(gone_reply.is_err());
        assert_eq!(kept.unwrap(), TurnOutcome::Stored);
        let conv = store.load_conversation("c1".into()).await.unwrap().unwrap();
        assert_eq!(conv.history.len(), 2);
        // Sent again, it fails again: not taken for a message already stored.
        let again = store.store_turn(turn("nowhere", "m0", "lost")).await;
        assert!(
            matches!(again, Err(StoreError::NoConversation(_))),
            "{again:?}"
        );
        // The conversation's next message continues its chain.
        store.store_turn(turn("c1", "m2", "next")).await.unwrap();
        let conv = store.load_conversation("c1".into()).await.unwrap().unwrap();
        let texts: Vec<&str> = conv.history.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert_eq!(texts[0], "kept");
        assert_eq!(texts[2], "next");
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn a_turn_failing_half_way_rolls_back_its_batch() {
        let (_dir, store, guard) = open_with(&["c1"]).await;
        // The decision fails after the visitor's message (and the reply in
        // its row) was written.
        store
            .run(|c| {
                c.execute_batch(
                    "CREATE TRIGGER no_decisions BEFORE INSERT ON decisions
                     BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        assert!(store.store_turn(turn("c1", "m1", "half")).await.is_err());
        store
            .run(|c| Ok(c.execute_batch("DROP TRIGGER no_decisions")?))
            .await
            .unwrap();
        let conv = store.load_conversation("c1".into()).await.unwrap().unwrap();
        assert!(conv.history.is_empty(), "{:?}", conv.history);
        // Sent again, it is stored whole.
        assert_eq!(
            store.store_turn(turn("c1", "m1", "half")).await.unwrap(),
            TurnOutcome::Stored
        );
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn forget_and_purge_delete_everything_of_a_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let (store, guard) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        for id in ["c1", "c2"] {
            store
                .create_conversation(id.into(), "h".into())
                .await
                .unwrap();
            let message = format!("m-{id}");
            store
                .store_turn(turn(id, &message, "private words"))
                .await
                .unwrap();
            assert!(store
                .store_feedback(id.into(), format!("a-{message}"), true)
                .await
                .unwrap());
        }
        assert!(store.forget("c1".into()).await.unwrap());
        assert!(!store.forget("c1".into()).await.unwrap());
        assert!(store
            .load_conversation("c1".into())
            .await
            .unwrap()
            .is_none());
        let left = scalar(
            &store,
            "SELECT COUNT(*) FROM messages WHERE conversation_id = 'c1'",
        )
        .await;
        assert_eq!(left, 0);
        let decisions = "SELECT COUNT(*) FROM decisions";
        let feedback = "SELECT COUNT(*) FROM feedback";
        assert_eq!(scalar(&store, decisions).await, 1, "c2's decision stays");
        assert_eq!(scalar(&store, feedback).await, 1, "c2's feedback stays");
        assert_eq!(store.purge_before(now_ms() + 1).await.unwrap(), 1);
        assert_eq!(scalar(&store, decisions).await, 0);
        assert_eq!(scalar(&store, feedback).await, 0);
        assert!(store
            .load_conversation("c2".into())
            .await
            .unwrap()
            .is_none());
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn idle_closing_reads_message_times_when_the_row_was_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, guard) = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        for id in ["quiet", "busy"] {
            store
                .create_conversation(id.into(), "h".into())
                .await
                .unwrap();
            store
                .store_turn(turn(id, &format!("{id}-1"), "q"))
                .await
                .unwrap();
        }
        // Both rows were last written an hour ago; "busy" has had a turn since
        // that left its row alone.
        let hour_ago = now_ms() - 3_600_000;
        store
            .run(move |c| {
                c.execute("UPDATE conversations SET updated_at = ?1", [hour_ago])?;
                c.execute("UPDATE messages SET created_at = ?1", [hour_ago])?;
                Ok(())
            })
            .await
            .unwrap();
        let mut later = turn("busy", "busy-2", "another");
        later.context = None;
        store.store_turn(later).await.unwrap();
        let updated = scalar(
            &store,
            "SELECT updated_at FROM conversations WHERE id = 'busy'",
        )
        .await;
        assert_eq!(updated, hour_ago, "a turn without context leaves the row");
        let closed = store.close_idle(now_ms() - 60_000).await.unwrap();
        assert_eq!(closed, vec![("quiet".to_string(), "deflected".to_string())]);
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn committed_pages_reach_the_database_file_while_the_store_runs() {
        let (dir, store, guard) = open_with(&["c1"]).await;
        let db = dir.path().join("frontdesk.db");
        let before = std::fs::metadata(&db).unwrap().len();
        let explanation = bulky_explanation();
        for i in 0..200 {
            let mut t = turn("c1", &format!("m{i}"), &"words ".repeat(200));
            t.reply.as_mut().unwrap().explanation = explanation.clone();
            store.store_turn(t).await.unwrap();
        }
        // Nothing but the checkpointer copies pages into the main file before
        // the store stops.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::metadata(&db).unwrap().len() < before + 200_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint while the store ran"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(store);
        guard.join();
    }

    /// A store whose WAL starts over past 1 MiB, with 64 conversations.
    async fn open_with_small_wal() -> (tempfile::TempDir, Store, WriterGuard, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            synchronous: Synchronous::Normal,
            wal_max_mib: 1,
            ..StoreConfig::default()
        };
        let (store, guard) = Store::open(dir.path(), &cfg).unwrap();
        let conversations: Vec<String> = (0..64).map(|i| format!("c{i}")).collect();
        for id in &conversations {
            store
                .create_conversation(id.clone(), "h".into())
                .await
                .unwrap();
        }
        (dir, store, guard, conversations)
    }

    /// Stores turns in every conversation without pause for `seconds`, every
    /// one of which must succeed, watching the WAL file: returns the largest
    /// size seen and whether it ever shrank.
    async fn sustained_writes(
        store: &Store,
        conversations: &[String],
        wal: &Path,
        seconds: u64,
        round: usize,
    ) -> (u64, bool) {
        let stop = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let explanation = bulky_explanation();
        let writers: Vec<_> = conversations
            .iter()
            .map(|id| {
                let (store, id) = (store.clone(), id.clone());
                let explanation = explanation.clone();
                tokio::spawn(async move {
                    let mut n = 0;
                    while std::time::Instant::now() < stop {
                        let message = format!("{id}-{round}-m{n}");
                        let mut t = turn(&id, &message, &"words ".repeat(50));
                        t.reply.as_mut().unwrap().explanation = explanation.clone();
                        store.store_turn(t).await.unwrap();
                        n += 1;
                    }
                })
            })
            .collect();
        let (mut largest, mut shrank) = (0u64, false);
        while std::time::Instant::now() < stop {
            let len = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
            shrank |= len < largest;
            largest = largest.max(len);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for w in writers {
            w.await.unwrap();
        }
        (largest, shrank)
    }

    /// Under writes that never pause, the WAL still starts over, and its file
    /// is cut back to the limit (it used to grow for as long as the load lasted).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_sustained_writes() {
        let (dir, store, guard, conversations) = open_with_small_wal().await;
        let wal = dir.path().join("frontdesk.db-wal");
        let (largest, shrank) = sustained_writes(&store, &conversations, &wal, 2, 0).await;
        assert!(
            largest > 1 << 20,
            "the load filled the WAL past its limit ({largest} bytes)"
        );
        assert!(
            shrank,
            "the WAL never started over while writes went on (grew to {largest} bytes)"
        );
        drop(store);
        guard.join();
    }

    /// A reader on an old snapshot (a long report) keeps the WAL from starting
    /// over; commits go on meanwhile, and once it is done the WAL starts over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_defers_the_wal_restart_without_failing_writes() {
        let (dir, store, guard, conversations) = open_with_small_wal().await;
        let wal = dir.path().join("frontdesk.db-wal");
        let report = Connection::open(dir.path().join("frontdesk.db")).unwrap();
        // The report's snapshot is taken while turns are being written, so it
        // reads frames from the WAL; every turn must still be stored.
        let begin_report = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            report.execute_batch("BEGIN").unwrap();
            report
                .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let (_, seen) = tokio::join!(
            sustained_writes(&store, &conversations, &wal, 2, 0),
            begin_report
        );
        assert!(seen > 0);
        report.execute_batch("COMMIT").unwrap();
        let (largest, shrank) = sustained_writes(&store, &conversations, &wal, 2, 1).await;
        assert!(
            shrank,
            "the WAL never started over after the reader finished (grew to {largest} bytes)"
        );
        drop(store);
        guard.join();
    }

    #[tokio::test]
    async fn feedback_needs_a_known_answer() {
        let (_dir, store, guard) = open_with(&["c1"]).await;
        store.store_turn(turn("c1", "m1", "q")).await.unwrap();
        assert!(store
            .store_feedback("c1".into(), "a-m1".into(), true)
            .await
            .unwrap());
        assert!(!store
            .store_feedback("c1".into(), "nope".into(), true)
            .await
            .unwrap());
        assert_eq!(
            store.close_conversation("c1".into()).await.unwrap(),
            "deflected"
        );
        drop(store);
        guard.join();
    }
}
