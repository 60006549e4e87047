//! A content snapshot: compiled intents and the indexed knowledge base, built
//! together and swapped in as one immutable value, so a decision never sees
//! half of an edit.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::engine::cache::DecisionCache;
use crate::intents::Intents;
use crate::kb::KnowledgeBase;

/// A content file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl ContentError {
    pub fn new(file: &Path, line: Option<usize>, message: String) -> Self {
        ContentError {
            file: file.to_path_buf(),
            line,
            message,
        }
    }
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ContentError {}

/// The 1-based line of byte `offset` in `text` (past the end: the last line).
/// Lines end at `\n` only, as editors number them: a stray carriage return or a
/// Unicode line separator, which some parsers count as a line break, is not one.
pub fn line_at(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// Everything the engine answers from.
pub struct Content {
    pub intents: Intents,
    pub kb: KnowledgeBase,
    /// Decisions made from this snapshot, for messages that come again.
    pub decisions: DecisionCache,
}

impl Content {
    pub fn new(intents: Intents, kb: KnowledgeBase) -> Content {
        Content {
            intents,
            kb,
            decisions: DecisionCache::default(),
        }
    }

    /// Loads, validates and compiles both content sources. The knowledge base
    /// reads the synonyms declared in the intents file, and indexes each
    /// intent's examples beside the articles so that a message close to an
    /// example reaches the intent even when none of its patterns match.
    pub fn load(intents: &Path, kb_dir: &Path) -> Result<Content, ContentError> {
        Content::reload(intents, kb_dir, None)
    }

    /// Loads the content again, reusing what `previous` read from files that
    /// have not changed since.
    pub fn reload(
        intents: &Path,
        kb_dir: &Path,
        previous: Option<&Content>,
    ) -> Result<Content, ContentError> {
        let intents = Intents::load(intents)?;
        let kb = KnowledgeBase::load_reusing(
            kb_dir,
            intent_phrasings(&intents),
            &intents.synonyms,
            previous.map(|c| &c.kb),
        )?;
        Ok(Content::new(intents, kb))
    }

    /// Builds a snapshot from compiled intents and parsed articles.
    pub fn build(
        intents: Intents,
        mut articles: Vec<crate::kb::Article>,
        kb_dir: &Path,
    ) -> Result<Content, ContentError> {
        articles.extend(intent_phrasings(&intents));
        let kb = KnowledgeBase::build(kb_dir, articles, &intents.synonyms)?;
        Ok(Content::new(intents, kb))
    }
}

/// Each intent's examples as an entry of the knowledge base.
fn intent_phrasings(intents: &Intents) -> Vec<crate::kb::Article> {
    intents
        .intents
        .iter()
        .filter_map(|i| crate::kb::Article::from_intent_examples(&i.id, &i.examples))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::line_at;

    #[test]
    fn lines_are_counted_at_newlines_only() {
        let text = "a\nb\r\rc\u{2028}d\ne";
        assert_eq!(line_at(text, 0), 1);
        assert_eq!(line_at(text, 2), 2);
        assert_eq!(line_at(text, text.find('d').unwrap()), 2);
        assert_eq!(line_at(text, text.len()), 3);
        assert_eq!(line_at(text, usize::MAX), 3);
        // Not a character boundary: still a line, never a panic.
        assert_eq!(line_at(text, text.find('\u{2028}').unwrap() + 1), 2);
    }
}
