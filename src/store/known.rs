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

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use rusqlite::Connection;

/// Conversations per generation.
const CAPACITY: usize = 4096;

/// Fingerprints (64-bit keyed hashes) of one conversation's message ids.
/// With a key chosen at random per process, two ids of one conversation
/// share a fingerprint with a chance of about one in 2^64 per pair.
type Ids = HashSet<u64>;

struct Known {
    key: RandomState,
    new: HashMap<String, Ids>,
    old: HashMap<String, Ids>,
}

thread_local! {
    static KNOWN: RefCell<Known> = RefCell::new(Known {
        key: RandomState::new(),
        new: HashMap::new(),
        old: HashMap::new(),
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
            let ids = match k.old.remove(conversation) {
                Some(ids) => ids,
                None => stored_ids(c, conversation, &k.key)?,
            };
            if k.new.len() >= CAPACITY {
                k.old = std::mem::take(&mut k.new);
            }
            k.new.insert(conversation.to_string(), ids);
        }
        Ok(k.new
            .get_mut(conversation)
            .expect("inserted above")
            .insert(print))
    })
}

/// Drops every set: something was rolled back, and a set may hold an id
/// that is not stored after all.
pub(super) fn forget_all() {
    KNOWN.with(|known| {
        let mut k = known.borrow_mut();
        k.new.clear();
        k.old.clear();
    });
}

/// The fingerprints of the message ids stored in a conversation.
fn stored_ids(c: &Connection, conversation: &str, key: &RandomState) -> rusqlite::Result<Ids> {
    let mut stmt = c.prepare_cached(super::chain!(
        "SELECT m.client_id FROM chain JOIN messages m ON m.seq = chain.seq
         WHERE m.client_id IS NOT NULL"
    ))?;
    let mut rows = stmt.query([conversation])?;
    let mut ids = Ids::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        ids.insert(key.hash_one(id.as_str()));
    }
    Ok(ids)
}
