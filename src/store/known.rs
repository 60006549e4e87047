//! The message ids each conversation already holds, kept by the writer so
//! that a message sent again (a visitor's resend after a reconnect, an
//! agent's retry) is refused without an index.
//!
//! Messages are found through their conversation's chain (migration 6), not
//! through an index on the conversation: such an index put one page of its
//! own into every group commit for every conversation in it, most of what a
//! commit wrote. What the index also did, refusing a message id the
//! conversation already has, is done here: the writer is the only thread
//! that stores messages, so a set of the ids it has seen, filled from the
//! conversation's chain the first time the conversation comes up, answers
//! exactly as the index did. Anything rolled back empties the sets (they are
//! filled again from what the database holds), and only the conversations
//! seen lately are kept: two generations, as in the engine's decision cache.
//!
//! The writer also keeps each conversation's last message once it has linked
//! one, which spares every turn after a conversation's first the lookup of
//! its chain's end (8% of the writer's time at saturation; docs/benchmarks.md,
//! fourteenth round). Deleting a conversation forgets it; a commit by another
//! process (`frontdesk forget`, say) makes the writer forget everything
//! (`PRAGMA data_version`, read as each group begins).
//!
//! And it keeps the decision contents it stored lately (migration 10), so
//! that a remembered decision, made again for another visitor, names the
//! content already stored instead of storing it again. They are found by
//! the address of their packed explanation, which a remembered decision
//! shares with every copy of it (the entry holds that explanation, so the
//! address is not reused while it is kept), and the rest of the content is
//! compared. Only contents whose explanation the engine's decision cache
//! also holds are kept: no other decision comes again. Deleting any
//! conversation forgets them all: the last decision naming a content
//! deletes it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use rusqlite::Connection;

use super::BotReply;

/// Conversations per generation.
const CAPACITY: usize = 4096;

/// Fingerprints (64-bit keyed hashes) of one conversation's message ids.
/// With a key chosen at random per process, two ids of one conversation
/// share a fingerprint with a chance of about one in 2^64 per pair. Being
/// keyed hashes already, they are their own hashes in the set.
type Ids = HashSet<u64, BuildHasherDefault<AsHash>>;

/// Hashes a fingerprint as itself.
#[derive(Default)]
struct AsHash(u64);

impl Hasher for AsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is expected; anything else is still hashed.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// What the writer knows of one conversation.
struct Seen {
    ids: Ids,
    /// Its last message, once the writer has linked one to it.
    last_seq: Option<i64>,
}

struct Known {
    key: RandomState,
    new: HashMap<String, Seen>,
    old: HashMap<String, Seen>,
    contents: Contents,
}

/// Stored decision contents by the address of their packed explanation,
/// in two generations. A key holds more than one content when decisions
/// with one explanation were stored with different quick replies (an
/// escalation offered a message instead, say).
#[derive(Default)]
struct Contents {
    new: HashMap<usize, Vec<(BotReply, i64)>>,
    old: HashMap<usize, Vec<(BotReply, i64)>>,
}

/// Where a reply's packed explanation is: its content's key.
fn address(reply: &BotReply) -> usize {
    std::sync::Arc::as_ptr(&reply.explanation) as *const u8 as usize
}

/// Whether two replies' decisions have the same content. Their packed
/// explanations are the same allocation: a kept entry holds its own, so no
/// other explanation can be at its address.
fn same_content(a: &BotReply, b: &BotReply) -> bool {
    a.kind == b.kind
        && a.text == b.text
        && a.source == b.source
        && a.source_json == b.source_json
        && a.quick_replies_json == b.quick_replies_json
        && a.score.to_bits() == b.score.to_bits()
        && a.escalation == b.escalation
        && a.smalltalk == b.smalltalk
        && std::sync::Arc::ptr_eq(&a.explanation, &b.explanation)
}

thread_local! {
    static KNOWN: RefCell<Known> = RefCell::new(Known {
        key: RandomState::new(),
        new: HashMap::new(),
        old: HashMap::new(),
        contents: Contents::default(),
    });
}

/// Whether `client_id` is new to the conversation; if it is, it is noted as
/// stored, so the caller must store it (or fail, which rolls back and calls
/// [`forget_all`]).
pub(super) fn first_time(
    c: &Connection,
    conversation: &str,
    client_id: &str,
) -> rusqlite::Result<bool> {
    KNOWN.with(|known| {
        let mut k = known.borrow_mut();
        let print = k.key.hash_one(client_id);
        if !k.new.contains_key(conversation) {
            let seen = match k.old.remove(conversation) {
                Some(seen) => seen,
                None => Seen {
                    ids: stored_ids(c, conversation, &k.key)?,
                    last_seq: None,
                },
            };
            if k.new.len() >= CAPACITY {
                k.old = std::mem::take(&mut k.new);
            }
            k.new.insert(conversation.to_string(), seen);
        }
        Ok(k.new
            .get_mut(conversation)
            .expect("inserted above")
            .ids
            .insert(print))
    })
}

/// The conversation's last message, if the writer has linked one to it
/// since it last forgot the conversation.
pub(super) fn last_seq(conversation: &str) -> Option<i64> {
    KNOWN.with(|known| {
        let k = known.borrow();
        k.new
            .get(conversation)
            .or_else(|| k.old.get(conversation))
            .and_then(|seen| seen.last_seq)
    })
}

/// Notes `seq` as the conversation's last message, just linked. Only a
/// conversation whose ids are known is noted (its set is filled from the
/// database the first time it comes up, which this must not stand in for).
pub(super) fn linked(conversation: &str, seq: i64) {
    KNOWN.with(|known| {
        let mut k = known.borrow_mut();
        let k = &mut *k;
        if let Some(seen) = k
            .new
            .get_mut(conversation)
            .or_else(|| k.old.get_mut(conversation))
        {
            seen.last_seq = Some(seq);
        }
    })
}

/// Forgets one conversation, deleted.
pub(super) fn forget(conversation: &str) {
    KNOWN.with(|known| {
        let mut k = known.borrow_mut();
        k.new.remove(conversation);
        k.old.remove(conversation);
    })
}

/// Drops everything: something was rolled back, and a set may hold an id
/// (or a content) that is not stored after all, or another process wrote
/// to the database.
pub(super) fn forget_all() {
    KNOWN.with(|known| {
        let mut k = known.borrow_mut();
        k.new.clear();
        k.old.clear();
        k.contents = Contents::default();
    });
}

/// The stored content of the reply's decision, if the writer stored it
/// lately.
pub(super) fn content(reply: &BotReply) -> Option<i64> {
    KNOWN.with(|known| {
        let k = known.borrow();
        let key = address(reply);
        let found = [&k.contents.new, &k.contents.old]
            .into_iter()
            .filter_map(|generation| generation.get(&key))
            .flatten()
            .find(|(stored, _)| same_content(stored, reply))
            .map(|&(_, id)| id);
        found
    })
}

/// Notes the content of the reply's decision as stored with `id`.
pub(super) fn stored_content(reply: &BotReply, id: i64) {
    KNOWN.with(|known| {
        let mut k = known.borrow_mut();
        let contents = &mut k.contents;
        if contents.new.len() >= CAPACITY {
            contents.old = std::mem::take(&mut contents.new);
        }
        contents
            .new
            .entry(address(reply))
            .or_default()
            .push((reply.clone(), id));
    })
}

/// Forgets the stored contents: a deleted decision may have deleted one.
pub(super) fn forget_contents() {
    KNOWN.with(|known| known.borrow_mut().contents = Contents::default());
}

/// The fingerprints of the message ids stored in a conversation.
fn stored_ids(c: &Connection, conversation: &str, key: &RandomState) -> rusqlite::Result<Ids> {
    let mut stmt = c.prepare_cached(super::chain!(
        "SELECT m.client_id FROM chain JOIN messages m ON m.seq = chain.seq
         WHERE m.client_id IS NOT NULL"
    ))?;
    let mut rows = stmt.query([conversation])?;
    let mut ids = Ids::default();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        ids.insert(key.hash_one(id.as_str()));
    }
    Ok(ids)
}
