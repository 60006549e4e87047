//! Text normalisation shared by intents and the knowledge base: case folding,
//! editor-declared synonyms, and the one analyzer (tokenise, fold accents, stem)
//! that both the tantivy index and the matcher's own scoring use, so a word is
//! the same term everywhere.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TextAnalyzerBuilder, TokenStream, Tokenizer,
};

/// Words too common to say anything about what a visitor wants. Question words
/// and negations are kept on purpose: "how long" and "why not" carry meaning.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "do", "does", "did", "for",
    "from", "had", "has", "have", "i", "i'm", "if", "in", "into", "is", "it", "its", "me", "my",
    "of", "on", "or", "our", "so", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "us", "was", "we", "were", "will", "with", "you", "your", "im", "am",
    "please", "hi", "hello", "hey", "thanks", "thank", "can", "could", "would", "should", "just",
    "u", "ur", "pls", "plz", "m", "s", "t", "ll", "ve", "d", "re",
];

/// Name under which [`analyzer`] is registered with tantivy.
pub const ANALYZER: &str = "frontdesk_en";

/// The analyzer for every indexed and matched text: split on anything that is not
/// a letter or digit, drop absurdly long tokens, lowercase, fold accents to ASCII,
/// drop stop words and apply English stemming.
pub fn analyzer() -> TextAnalyzer {
    words().filter(Stemmer::new(Language::English)).build()
}

/// [`analyzer`] up to its stemmer.
fn unstemmed_analyzer() -> TextAnalyzer {
    words().build()
}

/// The chain both analyzers share: words, at most 40 bytes, lowercased,
/// folded to ASCII, stop words removed.
fn words() -> TextAnalyzerBuilder<impl Tokenizer> {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
}

/// Words whose stems a thread remembers; past this, it starts over. Words
/// are at most 40 bytes, so a thread holds at most a few MiB of them, however
/// many distinct words visitors send.
const REMEMBERED_STEMS: usize = 16_384;

/// [`analyzer`] for visitor text, remembering the stem of each word: stemming
/// was most of analysing a message, and visitors' words repeat.
struct QueryAnalyzer {
    unstemmed: TextAnalyzer,
    /// [`analyzer`]'s stemmer, on one word at a time.
    stemmer: TextAnalyzer,
    stems: std::collections::HashMap<String, String>,
}

impl QueryAnalyzer {
    fn new() -> QueryAnalyzer {
        QueryAnalyzer {
            unstemmed: unstemmed_analyzer(),
            stemmer: TextAnalyzer::builder(tantivy::tokenizer::RawTokenizer::default())
                .filter(Stemmer::new(Language::English))
                .build(),
            stems: std::collections::HashMap::new(),
        }
    }

    fn terms(&mut self, text: &str) -> Vec<String> {
        let QueryAnalyzer {
            unstemmed,
            stemmer,
            stems,
        } = self;
        let mut out = Vec::new();
        let mut words = unstemmed.token_stream(text);
        while words.advance() {
            let word = &words.token().text;
            if let Some(stem) = stems.get(word) {
                out.push(stem.clone());
                continue;
            }
            let mut one = stemmer.token_stream(word);
            let stem = if one.advance() {
                one.token().text.clone()
            } else {
                word.clone()
            };
            if stems.len() >= REMEMBERED_STEMS {
                stems.clear();
            }
            stems.insert(word.clone(), stem.clone());
            out.push(stem);
        }
        out
    }
}

/// Terms of visitor text, as [`terms`] with [`analyzer`] gives them, with
/// the stems of words already seen on this thread remembered.
pub fn query_terms(text: &str) -> Vec<String> {
    thread_local! {
        static QUERY: std::cell::RefCell<QueryAnalyzer> =
            std::cell::RefCell::new(QueryAnalyzer::new());
    }
    QUERY.with_borrow_mut(|q| q.terms(text))
}

/// Terms of `text` as [`analyzer`] produces them, in order.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Lowercased [`tidy`] form: what content files and visitor text are compared in.
pub fn normalize(text: &str) -> String {
    tidy(text).to_lowercase()
}

/// Straighten typographic quotes and collapse whitespace, keeping case, so
/// captures (an order number, say) come out as the visitor typed them. The
/// two non-ASCII letters that case-insensitive patterns take for ASCII ones,
/// the Kelvin sign (K) and the long s, become those letters, so the intents'
/// ASCII prefilter finds every text their patterns match.
pub fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for ch in text.chars() {
        let ch = match ch {
            '\u{2018}' | '\u{2019}' | '\u{02BC}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{212A}' => 'K',
            '\u{017F}' => 's',
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if ch == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(ch);
            space = false;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// True when the byte range `start..end` of `text` is bounded by non-word
/// characters (or the ends of the text), so a phrase match is a whole word.
pub fn is_whole_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// Editor-declared synonyms: each variant phrase found as whole words in a
/// text (ASCII case-insensitively) is rewritten to its canonical term.
#[derive(Debug, Clone)]
pub struct Synonyms {
    automaton: Option<AhoCorasick>,
    canonical: Vec<String>,
    /// The (variant, canonical) pairs, to tell whether two sets are the same.
    pairs: Vec<(String, String)>,
}

impl PartialEq for Synonyms {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Synonyms {
    /// Builds the rewriter from `(canonical, variants)` pairs.
    pub fn new<'a>(groups: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let mut variants = Vec::new();
        let mut canonical = Vec::new();
        for (canon, vars) in groups {
            for v in vars {
                let v = normalize(v);
                if !v.is_empty() {
                    variants.push(v);
                    canonical.push(normalize(canon));
                }
            }
        }
        let automaton = (!variants.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .ascii_case_insensitive(true)
                .build(&variants)
                .expect("synonym automaton within size limits")
        });
        let pairs = variants
            .into_iter()
            .zip(canonical.iter().cloned())
            .collect();
        Synonyms {
            automaton,
            canonical,
            pairs,
        }
    }

    /// True when no synonyms are declared.
    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// Rewrites variants in a [`tidy`] text to their canonical terms.
    pub fn apply(&self, normalized: &str) -> String {
        let Some(ac) = &self.automaton else {
            return normalized.to_string();
        };
        let mut out = String::with_capacity(normalized.len());
        let mut last = 0;
        for m in ac.find_iter(normalized) {
            if !is_whole_word(normalized, m.start(), m.end()) {
                continue;
            }
            out.push_str(&normalized[last..m.start()]);
            out.push_str(&self.canonical[m.pattern().as_usize()]);
            last = m.end();
        }
        out.push_str(&normalized[last..]);
        out
    }
}

/// Turns a markdown fragment into plain text for chat excerpts: drops heading
/// marks, emphasis, code fences and link targets, keeps link text and list items.
pub fn markdown_to_plain(md: &str) -> String {
    let mut lines = Vec::new();
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            continue;
        }
        let t = t.trim_start_matches('#').trim_start();
        let t = if let Some(rest) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
            format!("• {rest}")
        } else {
            t.to_string()
        };
        lines.push(strip_inline_markdown(&t));
    }
    lines.join("\n").trim().to_string()
}

fn strip_inline_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' | '_' | '`' => {
                // Emphasis and code marks vanish; a lone underscore inside a word stays.
                let inside_word = c == '_'
                    && i > 0
                    && chars[i - 1].is_alphanumeric()
                    && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                if inside_word {
                    out.push(c);
                }
                i += 1;
            }
            '[' => {
                // [text](target) -> text
                if let Some(close) = chars[i + 1..].iter().position(|&x| x == ']') {
                    let close = i + 1 + close;
                    if chars.get(close + 1) == Some(&'(') {
                        if let Some(end) = chars[close + 2..].iter().position(|&x| x == ')') {
                            out.extend(&chars[i + 1..close]);
                            i = close + 2 + end + 1;
                            continue;
                        }
                    }
                }
                out.push(c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_case_quotes_and_space() {
        assert_eq!(normalize("  Where’s   MY\tOrder? "), "where's my order?");
        assert_eq!(normalize("ÜBER Straße"), "über straße");
        assert_eq!(tidy(" Order  FD-1 "), "Order FD-1");
        assert_eq!(tidy("\u{17F}ix \u{212A}g"), "six Kg");
    }

    #[test]
    fn analyzer_stems_and_folds() {
        let mut a = analyzer();
        assert_eq!(
            terms(&mut a, "The refunds, refunded; café!"),
            ["refund", "refund", "cafe"]
        );
    }

    #[test]
    fn visitor_text_gets_the_analyzers_terms_from_memory_too() {
        let texts = [
            "The refunds, refunded; café!",
            "Where's my order FD-123456? It was delivered to the wrong address",
            "running runner runs ran cancellation cancelled cancelling",
            "Ünïcödé naïve résumé über straße",
            "a an the please thanks",
            "",
            "supercalifragilisticexpialidocious-and-a-word-longer-than-forty-characters-in-all x",
            "how long does delivery take to germany",
        ];
        let mut a = analyzer();
        // Twice: the first analysis stems, the second remembers.
        for round in 0..2 {
            for text in texts {
                assert_eq!(
                    query_terms(text),
                    terms(&mut a, text),
                    "{text:?}, round {round}"
                );
            }
        }
        let mut q = QueryAnalyzer::new();
        for i in 0..REMEMBERED_STEMS + 10 {
            q.terms(&format!("word{i}"));
        }
        assert!(q.stems.len() <= REMEMBERED_STEMS, "the memory is bounded");
        assert_eq!(q.terms("refunds running"), ["refund", "run"]);
    }

    #[test]
    fn synonyms_rewrite_whole_words_only() {
        let vars = ["package".to_string(), "money back".to_string()];
        let s = Synonyms::new([("parcel", &vars[..1]), ("refund", &vars[1..])]);
        assert_eq!(s.apply("where is my package"), "where is my parcel");
        assert_eq!(s.apply("I want my Money Back now"), "I want my refund now");
        assert_eq!(s.apply("packages"), "packages");
    }

    #[test]
    fn markdown_becomes_plain_text() {
        assert_eq!(
            markdown_to_plain(
                "## Title\n- **Free** [returns](../r.md) within *30* days\nsnake_case"
            ),
            "Title\n• Free returns within 30 days\nsnake_case"
        );
    }
}
