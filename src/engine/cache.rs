//! Decisions remembered for messages seen before.
//!
//! Support traffic repeats itself: "hi", "where is my order?", "talk to a
//! person" arrive word for word from many visitors. A decision is a pure
//! function of the content snapshot, the conversation's context, the text and
//! the thresholds, so a content snapshot can remember what it decided for a
//! (context, text) pair and give the same decision again without searching.
//! Each snapshot has its own cache: a reload starts from an empty one.
//!
//! A text is remembered the second time it is decided, not the first: most
//! texts never come again, and keeping their decisions would only push out
//! those that do and keep memory busy. The first time, only a hash of the
//! text is noted.
//!
//! A conversation waiting for a slot's value (an order number, say) is a
//! context like any other: the questions visitors ask there instead of
//! answering are as repetitive as anywhere, and are remembered for that wait,
//! apart from the same text in a fresh conversation.
//!
//! What is not remembered: long texts (rarely repeated word for word), a text
//! that answers a slot's question (its value may be personal, and is seldom
//! sent twice), and any text with sensitive content, so that the cache never
//! holds what the store only ever sees redacted.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Mutex;

use super::{Context, Decided};

/// Texts longer than this, in bytes, are decided every time.
pub const MAX_TEXT: usize = 256;

/// How many texts the cache holds at most.
pub const CAPACITY: usize = 2_048;

/// How many texts seen once are noted (by hash) at most; past that the notes
/// start again.
pub const SEEN_CAPACITY: usize = 16_384;

/// How many contexts it remembers a text in at most, the latest kept. With
/// `fallbacks_before_escalation = 0` a visitor can repeat a text with a count
/// that only grows; each count is a context of its own.
pub const CONTEXTS_PER_TEXT: usize = 4;

/// The remembered decisions, in two generations: a lookup that finds a text
/// in the older one moves it to the newer; when the newer fills up, it
/// becomes the older and the older is dropped. Texts asked about again and
/// again stay; the rest age out after at most `CAPACITY` other texts.
#[derive(Default)]
pub struct DecisionCache {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    newer: HashMap<String, Entries>,
    older: HashMap<String, Entries>,
    /// Hashes of texts decided once and not remembered yet.
    seen: HashSet<u64>,
    hasher: std::collections::hash_map::RandomState,
}

/// The decisions for one text, one per context it arrived in (almost always
/// one or two: a fresh context, or one after a fallback), oldest first.
type Entries = Vec<(Context, Decided)>;

impl DecisionCache {
    /// The decision remembered for `text` in context `ctx`.
    pub fn get(&self, ctx: &Context, text: &str) -> Option<Decided> {
        if !kept_for(text) {
            return None;
        }
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = g.newer.get(text) {
            return find(entries, ctx);
        }
        let (key, entries) = g.older.remove_entry(text)?;
        let found = find(&entries, ctx);
        let dropped = g.insert(key, entries);
        drop(g);
        drop(dropped);
        found
    }

    /// Remembers `decision`, made for `text` in context `ctx`, if it is one
    /// to remember.
    pub fn put(&self, ctx: &Context, text: &str, decided: &Decided) {
        let d = &decided.decision;
        if !kept_for(text)
            || !d.explanation.sensitive.is_empty()
            || d.explanation.answered_slot.is_some()
            || d.redacted != text
        {
            return;
        }
        let decision = decided.clone();
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = g.newer.get_mut(text) {
            add(entries, ctx, decision);
            return;
        }
        let mut entries = match g.older.remove(text) {
            Some(entries) => entries,
            None => {
                // Not remembered in any context: remembered only if seen before.
                let hash = g.hasher.hash_one(text);
                if g.seen.len() >= SEEN_CAPACITY {
                    g.seen.clear();
                }
                if g.seen.insert(hash) {
                    return;
                }
                g.seen.remove(&hash);
                Entries::new()
            }
        };
        add(&mut entries, ctx, decision);
        let dropped = g.insert(text.to_string(), entries);
        drop(g);
        drop(dropped);
    }

    /// How many texts the cache holds.
    pub fn len(&self) -> usize {
        let g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g.newer.len() + g.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Generations {
    /// Inserts into the newer generation, first making it the older one when
    /// it is full. Returns the generation that ages out, for the caller to
    /// drop once the lock is released (a thousand decisions take a while to
    /// free, and other lookups wait on the lock).
    #[must_use]
    fn insert(&mut self, text: String, entries: Entries) -> HashMap<String, Entries> {
        let dropped = if self.newer.len() >= CAPACITY / 2 {
            std::mem::replace(&mut self.older, std::mem::take(&mut self.newer))
        } else {
            HashMap::new()
        };
        self.newer.insert(text, entries);
        dropped
    }
}

/// Whether a text is one the cache keeps at all: short.
fn kept_for(text: &str) -> bool {
    text.len() <= MAX_TEXT
}

/// Adds (or replaces) the decision for `ctx`, dropping the oldest context
/// past `CONTEXTS_PER_TEXT`.
fn add(entries: &mut Entries, ctx: &Context, decided: Decided) {
    entries.retain(|(c, _)| c != ctx);
    if entries.len() >= CONTEXTS_PER_TEXT {
        entries.remove(0);
    }
    entries.push((ctx.clone(), decided));
}

fn find(entries: &Entries, ctx: &Context) -> Option<Decided> {
    entries
        .iter()
        .find(|(c, _)| c == ctx)
        .map(|(_, d)| d.clone())
}
