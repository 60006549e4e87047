//! Intents: `intents.toml` parsed, validated and compiled once into matchers.
//!
//! Patterns are matched in two stages, chosen by measurement (see the README):
//! one `RegexSet` over a thousand patterns falls back to a slow NFA because
//! its lazy DFA thrashes, while most patterns begin with one of a few literal
//! strings. So every pattern whose matches must start with one of a finite set
//! of literals is indexed by those literals in one aho-corasick automaton, and
//! only the patterns whose literals occur in the text are run. Patterns
//! without such literals (`.*refund`, say) go into one `RegexSet` that runs on
//! every message. Patterns written in ASCII run in the byte-oriented ASCII
//! mode; patterns that need Unicode (non-ASCII literals, `\p{..}`) run in
//! Unicode mode, so non-English text keeps working. Keywords compile into one
//! case-insensitive aho-corasick automaton matched on whole words. Named
//! captures and slot patterns fill the `{slot}` placeholders of a response.

mod schema;
pub mod sensitive;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};

use crate::content::ContentError;
use crate::text::{is_whole_word, Synonyms};
pub use sensitive::{Scan, Sensitive, SensitiveRule, REDACTED};

/// What an intent does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Answer,
    Escalate,
}

/// A compiled pattern: kept per intent to extract captures once the set says it matched.
#[derive(Debug, Clone)]
enum Pattern {
    Ascii(regex::bytes::Regex),
    Unicode(Regex),
}

impl Pattern {
    fn source(&self) -> &str {
        match self {
            Pattern::Ascii(r) => r.as_str(),
            Pattern::Unicode(r) => r.as_str(),
        }
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Pattern::Ascii(r) => r.is_match(text.as_bytes()),
            Pattern::Unicode(r) => r.is_match(text),
        }
    }

    /// Named captures of the first match, and the matched length.
    fn captures(&self, text: &str) -> Option<(usize, Vec<(String, String)>)> {
        match self {
            Pattern::Ascii(r) => {
                let caps = r.captures(text.as_bytes())?;
                let named = r
                    .capture_names()
                    .flatten()
                    .filter_map(|n| {
                        caps.name(n).map(|m| {
                            (
                                n.to_string(),
                                String::from_utf8_lossy(m.as_bytes()).into_owned(),
                            )
                        })
                    })
                    .collect();
                Some((caps.get(0).map_or(0, |m| m.len()), named))
            }
            Pattern::Unicode(r) => {
                let caps = r.captures(text)?;
                let named = r
                    .capture_names()
                    .flatten()
                    .filter_map(|n| {
                        caps.name(n)
                            .map(|m| (n.to_string(), m.as_str().to_string()))
                    })
                    .collect();
                Some((caps.get(0).map_or(0, |m| m.len()), named))
            }
        }
    }
}

/// A slot of an intent: filled from a named capture or by its own pattern.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub pattern: Option<Regex>,
    pub prompt: Option<String>,
}

impl Slot {
    /// The slot's value in `text`: the first capture group of its pattern, or the whole match.
    pub fn find(&self, text: &str) -> Option<String> {
        let caps = self.pattern.as_ref()?.captures(text)?;
        let m = caps.get(1).or_else(|| caps.get(0))?;
        Some(m.as_str().to_string())
    }
}

/// A compiled intent.
#[derive(Debug, Clone)]
pub struct Intent {
    pub id: String,
    pub priority: i32,
    pub action: Action,
    /// Escalation reason for `Action::Escalate` ("requested" or "intent_rule").
    pub reason: String,
    patterns: Vec<Pattern>,
    /// Line of each pattern in the file.
    pub pattern_lines: Vec<usize>,
    pub keywords: Vec<String>,
    pub examples: Vec<String>,
    pub response: String,
    pub quick_replies: Vec<String>,
    pub slots: Vec<Slot>,
    /// Line of the `[[intent]]` table in the file.
    pub line: usize,
    /// Greetings, thanks and goodbyes: answered, but not questions, so a
    /// conversation of only these counts in no outcome.
    pub smalltalk: bool,
}

impl Intent {
    /// Pattern sources, for explanations and lints.
    pub fn pattern_sources(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(Pattern::source)
    }

    /// True when pattern number `index` matches `text`.
    pub fn pattern_matches(&self, index: usize, text: &str) -> bool {
        self.patterns.get(index).is_some_and(|p| p.is_match(text))
    }
}

/// How an intent matched.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchedBy {
    Pattern(String),
    Keyword(String),
}

/// One intent that matched a text.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentMatch {
    pub intent: usize,
    pub by: MatchedBy,
    /// Length in bytes of the matched span: a longer match is more specific.
    pub len: usize,
    /// Named captures of the matching pattern.
    pub captures: Vec<(String, String)>,
}

/// All intents of a content snapshot, with the sensitive rules and synonyms
/// declared in the same file.
#[derive(Debug, Clone)]
pub struct Intents {
    pub intents: Vec<Intent>,
    pub sensitive: Sensitive,
    pub synonyms: Synonyms,
    /// (intent, pattern) of every pattern, by global pattern index.
    pattern_owner: Vec<(usize, usize)>,
    /// Literal prefixes -> the global patterns they stand for.
    prefixes: Option<AhoCorasick>,
    prefix_patterns: Vec<Vec<usize>>,
    /// Patterns without a literal prefix set, checked on every message, in
    /// two sets with the global pattern each member stands for: those
    /// anchored at the start of the text, whose search ends as soon as no
    /// pattern can match from there, and the rest.
    unfiltered: [(regex::RegexSet, Vec<usize>); 2],
    keywords: Option<AhoCorasick>,
    keyword_owner: Vec<usize>,
    /// Index in `intents` by id (looked up on every answer an intent gives).
    by_id: HashMap<String, usize>,
}

impl Intents {
    /// No intents, no sensitive rules, no synonyms.
    pub fn empty() -> Self {
        Intents::compile("", Path::new("(none)")).expect("empty intents compile")
    }

    /// Reads and compiles an intents file.
    pub fn load(path: &Path) -> Result<Intents, ContentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ContentError::new(path, None, format!("cannot read: {e}")))?;
        Intents::compile(&text, path)
    }

    /// Parses and compiles intents text; `path` names the file in errors.
    pub fn compile(text: &str, path: &Path) -> Result<Intents, ContentError> {
        let line_of = |offset: usize| crate::content::line_at(text, offset);
        let raw: schema::RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(s.start));
            ContentError::new(path, line, e.message().to_string())
        })?;

        let mut intents = Vec::with_capacity(raw.intent.len());
        let mut seen = HashSet::new();
        let mut pattern_owner = Vec::new();
        let mut prefix_index: HashMap<String, usize> = HashMap::new();
        let mut prefix_literals: Vec<String> = Vec::new();
        let mut prefix_patterns: Vec<Vec<usize>> = Vec::new();
        // [anchored at the start, anywhere]: sources and global patterns.
        let mut unfiltered_src: [Vec<String>; 2] = Default::default();
        let mut unfiltered_patterns: [Vec<usize>; 2] = Default::default();
        let mut keywords = Vec::new();
        let mut keyword_owner = Vec::new();

        for spanned in raw.intent {
            let line = line_of(spanned.span().start);
            let r = spanned.into_inner();
            let err = |line: usize, msg: String| {
                ContentError::new(path, Some(line), format!("intent {:?}: {msg}", r.id))
            };
            if r.id.trim().is_empty() {
                return Err(ContentError::new(
                    path,
                    Some(line),
                    "intent with an empty id".into(),
                ));
            }
            if !seen.insert(r.id.clone()) {
                return Err(err(line, "duplicate intent id".into()));
            }
            if r.patterns.is_empty() && r.keywords.is_empty() {
                return Err(err(line, "needs at least one pattern or keyword".into()));
            }
            let reason = match (r.action, r.reason.as_deref()) {
                (schema::RawAction::Answer, Some(_)) => {
                    return Err(err(
                        line,
                        "`reason` is only for action = \"escalate\"".into(),
                    ))
                }
                (schema::RawAction::Answer, None) => String::new(),
                (schema::RawAction::Escalate, None) => "intent_rule".to_string(),
                (schema::RawAction::Escalate, Some(r @ ("requested" | "intent_rule"))) => {
                    r.to_string()
                }
                (schema::RawAction::Escalate, Some(other)) => {
                    return Err(err(
                        line,
                        format!("unknown reason {other:?} (use \"requested\" or \"intent_rule\")"),
                    ))
                }
            };
            let idx = intents.len();
            let mut patterns = Vec::new();
            let mut pattern_lines = Vec::new();
            let mut capture_names = HashSet::new();
            for (pi, p) in r.patterns.iter().enumerate() {
                let pline = line_of(p.span().start);
                let src = p.get_ref();
                let pattern = compile_pattern(src)
                    .map_err(|e| err(pline, format!("pattern {src:?} does not compile: {e}")))?;
                match &pattern {
                    Pattern::Ascii(re) => {
                        capture_names.extend(re.capture_names().flatten().map(str::to_string))
                    }
                    Pattern::Unicode(re) => {
                        capture_names.extend(re.capture_names().flatten().map(str::to_string))
                    }
                }
                let global = pattern_owner.len();
                pattern_owner.push((idx, pi));
                match how_checked(src) {
                    Check::Prefixes(literals) => {
                        for lit in literals {
                            let slot = *prefix_index.entry(lit.clone()).or_insert_with(|| {
                                prefix_literals.push(lit);
                                prefix_patterns.push(Vec::new());
                                prefix_literals.len() - 1
                            });
                            prefix_patterns[slot].push(global);
                        }
                    }
                    check => {
                        let group = usize::from(check == Check::Anywhere);
                        unfiltered_src[group].push(src.clone());
                        unfiltered_patterns[group].push(global);
                    }
                }
                patterns.push(pattern);
                pattern_lines.push(pline);
            }
            for k in &r.keywords {
                let k = crate::text::normalize(k);
                if k.is_empty() {
                    return Err(err(line, "empty keyword".into()));
                }
                keywords.push(k);
                keyword_owner.push(idx);
            }
            let mut slots = Vec::new();
            for s in r.slots {
                let sline = line_of(s.span().start);
                let s = s.into_inner();
                let pattern = match &s.pattern {
                    Some(src) => Some(
                        RegexBuilder::new(src)
                            .case_insensitive(true)
                            .build()
                            .map_err(|e| {
                                err(
                                    sline,
                                    format!("slot {:?} pattern does not compile: {e}", s.name),
                                )
                            })?,
                    ),
                    None => None,
                };
                if pattern.is_none() && !capture_names.contains(&s.name) {
                    return Err(err(
                        sline,
                        format!(
                            "slot {:?} has no pattern and no pattern of the intent captures it",
                            s.name
                        ),
                    ));
                }
                slots.push(Slot {
                    name: s.name,
                    pattern,
                    prompt: s.prompt,
                });
            }
            for placeholder in placeholders(&r.response) {
                let known = slots.iter().any(|s| s.name == placeholder)
                    || capture_names.contains(placeholder);
                if !known {
                    return Err(err(
                        line,
                        format!("response uses {{{placeholder}}} but no slot or capture fills it"),
                    ));
                }
            }
            keywords.dedup();
            intents.push(Intent {
                id: r.id,
                priority: r.priority,
                action: match r.action {
                    schema::RawAction::Answer => Action::Answer,
                    schema::RawAction::Escalate => Action::Escalate,
                },
                reason,
                patterns,
                pattern_lines,
                keywords: r
                    .keywords
                    .iter()
                    .map(|k| crate::text::normalize(k))
                    .collect(),
                examples: r.examples,
                response: r.response,
                quick_replies: r.quick_replies,
                slots,
                line,
                smalltalk: r.smalltalk,
            });
        }

        let mut rules = Vec::new();
        let mut rule_ids = HashSet::new();
        for spanned in raw.sensitive.rule {
            let line = line_of(spanned.span().start);
            let r = spanned.into_inner();
            if !rule_ids.insert(r.id.clone()) {
                return Err(ContentError::new(
                    path,
                    Some(line),
                    format!("sensitive rule {:?}: duplicate id", r.id),
                ));
            }
            if r.terms.is_empty() && r.patterns.is_empty() {
                return Err(ContentError::new(
                    path,
                    Some(line),
                    format!("sensitive rule {:?}: needs terms or patterns", r.id),
                ));
            }
            let mut patterns = Vec::new();
            for src in &r.patterns {
                patterns.push(
                    RegexBuilder::new(src)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| {
                            ContentError::new(
                                path,
                                Some(line),
                                format!(
                                    "sensitive rule {:?}: pattern {src:?} does not compile: {e}",
                                    r.id
                                ),
                            )
                        })?,
                );
            }
            rules.push((
                SensitiveRule {
                    id: r.id,
                    patterns,
                    luhn: r.luhn,
                    redact: r.redact,
                    response: r.response,
                },
                r.terms,
            ));
        }

        let set = |src: &[String]| {
            regex::RegexSetBuilder::new(src)
                .case_insensitive(true)
                .build()
                .map_err(|e| ContentError::new(path, None, format!("pattern set: {e}")))
        };
        let [anchored, anywhere] = unfiltered_patterns;
        let unfiltered = [
            (set(&unfiltered_src[0])?, anchored),
            (set(&unfiltered_src[1])?, anywhere),
        ];
        let prefixes = (!prefix_literals.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .build(&prefix_literals)
                .expect("pattern prefixes within automaton size limits")
        });
        let keyword_automaton = (!keywords.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .ascii_case_insensitive(true)
                .build(&keywords)
                .expect("keywords within automaton size limits")
        });
        let synonyms = Synonyms::new(
            raw.synonyms
                .iter()
                .map(|(canon, vars)| (canon.as_str(), vars.as_slice())),
        );

        let mut by_id = HashMap::with_capacity(intents.len());
        for (i, intent) in intents.iter().enumerate() {
            by_id.entry(intent.id.clone()).or_insert(i);
        }
        Ok(Intents {
            by_id,
            intents,
            sensitive: Sensitive::new(rules, raw.sensitive.response),
            synonyms,
            pattern_owner,
            prefixes,
            prefix_patterns,
            unfiltered,
            keywords: keyword_automaton,
            keyword_owner,
        })
    }

    /// Patterns that have no literal prefix and so run on every message.
    pub fn unfiltered_patterns(&self) -> impl Iterator<Item = (&Intent, &str)> {
        self.unfiltered.iter().flat_map(|(_, g)| g).map(|&g| {
            let (i, p) = self.pattern_owner[g];
            (&self.intents[i], self.intents[i].patterns[p].source())
        })
    }

    /// Looks an intent up by id.
    pub fn get(&self, id: &str) -> Option<&Intent> {
        self.by_id.get(id).map(|&i| &self.intents[i])
    }

    /// Every intent that matches `text` (a [`crate::text::tidy`] text with synonyms
    /// applied), best first: higher priority, then pattern over keyword, then the
    /// longer match.
    pub fn find(&self, text: &str) -> Vec<IntentMatch> {
        let mut found: HashMap<usize, IntentMatch> = HashMap::new();
        let mut consider = |m: IntentMatch| {
            let better = match found.get(&m.intent) {
                None => true,
                Some(old) => rank(&m) > rank(old),
            };
            if better {
                found.insert(m.intent, m);
            }
        };
        let mut candidates: Vec<usize> = self
            .unfiltered
            .iter()
            .flat_map(|(set, globals)| set.matches(text).into_iter().map(|i| globals[i]))
            .collect();
        if let Some(ac) = &self.prefixes {
            for m in ac.find_overlapping_iter(text) {
                candidates.extend_from_slice(&self.prefix_patterns[m.pattern().as_usize()]);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        for global in candidates {
            let (intent, pi) = self.pattern_owner[global];
            let pattern = &self.intents[intent].patterns[pi];
            if let Some((len, captures)) = pattern.captures(text) {
                consider(IntentMatch {
                    intent,
                    by: MatchedBy::Pattern(pattern.source().to_string()),
                    len,
                    captures,
                });
            }
        }
        if let Some(ac) = &self.keywords {
            for m in ac.find_iter(text) {
                if is_whole_word(text, m.start(), m.end()) {
                    let intent = self.keyword_owner[m.pattern().as_usize()];
                    consider(IntentMatch {
                        intent,
                        by: MatchedBy::Keyword(text[m.start()..m.end()].to_lowercase()),
                        len: m.len(),
                        captures: Vec::new(),
                    });
                }
            }
        }
        let mut out: Vec<IntentMatch> = found.into_values().collect();
        out.sort_by(|a, b| {
            let pa = self.intents[a.intent].priority;
            let pb = self.intents[b.intent].priority;
            pb.cmp(&pa)
                .then_with(|| rank(b).cmp(&rank(a)))
                .then_with(|| a.intent.cmp(&b.intent))
        });
        out
    }
}

fn rank(m: &IntentMatch) -> (bool, usize) {
    (matches!(m.by, MatchedBy::Pattern(_)), m.len)
}

/// How a pattern is found in a message.
#[derive(Debug, PartialEq)]
enum Check {
    /// Through the prefilter: every match starts with one of these literals.
    Prefixes(Vec<String>),
    /// On every message, in the set of patterns anchored at its start.
    Anchored,
    /// On every message, in the set of patterns that match anywhere.
    Anywhere,
}

/// Reads `src` once to tell how it is checked: through its literal prefixes
/// when it has them, otherwise by whether it is anchored at the start.
fn how_checked(src: &str) -> Check {
    let Ok(hir) = regex_syntax::ParserBuilder::new().build().parse(src) else {
        return Check::Anywhere;
    };
    if let Some(literals) = literal_prefixes(&hir) {
        Check::Prefixes(literals)
    } else if hir
        .properties()
        .look_set_prefix()
        .contains(regex_syntax::hir::Look::Start)
    {
        Check::Anchored
    } else {
        Check::Anywhere
    }
}

/// The literals every match of `hir` must start with, lowercased, if there is
/// a small finite set of them that the ASCII case-insensitive prefilter can
/// find; `None` when the pattern must be checked on every message.
fn literal_prefixes(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    const MAX_LITERALS: usize = 64;
    let mut seq = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    // Many alternatives ("are you a bot|robot|human|...") share short
    // prefixes; shorter literals are still a valid (if looser) filter.
    for keep in [12, 8, 6, 4, 3] {
        if seq.len()? <= MAX_LITERALS {
            break;
        }
        seq.keep_first_bytes(keep);
        seq.dedup();
    }
    let literals = seq.literals()?;
    if literals.is_empty() || literals.len() > MAX_LITERALS {
        return None;
    }
    let mut out = Vec::with_capacity(literals.len());
    for lit in literals {
        let text = std::str::from_utf8(lit.as_bytes()).ok()?;
        // Case-insensitive matching of non-ASCII letters is beyond the prefilter,
        // and a one-byte literal filters nothing.
        if text.len() < 2 || !text.is_ascii() {
            return None;
        }
        out.push(text.to_ascii_lowercase());
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// ASCII-only patterns compile in the fast byte-oriented ASCII mode; others, and
/// any the ASCII mode refuses, in Unicode mode.
fn compile_pattern(src: &str) -> Result<Pattern, regex::Error> {
    let needs_unicode = !src.is_ascii() || src.contains("\\p") || src.contains("\\P");
    if !needs_unicode {
        if let Ok(re) = regex::bytes::RegexBuilder::new(src)
            .unicode(false)
            .case_insensitive(true)
            .build()
        {
            return Ok(Pattern::Ascii(re));
        }
    }
    RegexBuilder::new(src)
        .case_insensitive(true)
        .build()
        .map(Pattern::Unicode)
}

/// `{name}` placeholders of a response.
pub fn placeholders(response: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = response;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    out.push(name);
                }
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

/// Fills `{name}` placeholders from `values`; unknown ones are left as written.
pub fn fill(response: &str, values: &[(String, String)]) -> String {
    let mut out = response.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[synonyms]
parcel = ["package"]

[[intent]]
id = "greeting"
patterns = ['^(hi|hello)\b']
response = "Hello!"

[[intent]]
id = "order_status"
priority = 10
patterns = ["where(?:'s| is) my (?:order|parcel)"]
keywords = ["order status"]
response = "Order {order_number}: on its way."

[[intent.slots]]
name = "order_number"
pattern = '\bFD-?(\d{6})\b'
prompt = "What's the order number?"

[[intent]]
id = "grüße"
patterns = ['grüß gott']
response = "Servus"

[sensitive]
[[sensitive.rule]]
id = "legal"
terms = ["lawyer"]
"#;

    fn intents() -> Intents {
        Intents::compile(FILE, Path::new("intents.toml")).unwrap()
    }

    #[test]
    fn patterns_keywords_and_priority() {
        let i = intents();
        let found = i.find("Hi, where is my order?");
        let ids: Vec<&str> = found
            .iter()
            .map(|m| i.intents[m.intent].id.as_str())
            .collect();
        assert_eq!(ids, ["order_status", "greeting"]);
        let found = i.find("what's my ORDER STATUS");
        assert_eq!(found[0].by, MatchedBy::Keyword("order status".into()));
        assert!(i.find("my order status-quo?").len() == 1);
        assert!(i.find("orderstatus").is_empty());
    }

    /// The prefixes `src` is prefiltered by, if any.
    fn prefilter_literals(src: &str) -> Option<Vec<String>> {
        match how_checked(src) {
            Check::Prefixes(literals) => Some(literals),
            Check::Anchored | Check::Anywhere => None,
        }
    }

    #[test]
    fn prefixes_are_found_for_literal_patterns_only() {
        assert_eq!(
            prefilter_literals(r"\bwhere(?:'s| is) my (?:order|parcel)"),
            Some(vec![
                "where is my order".to_string(),
                "where is my parcel".to_string(),
                "where's my order".to_string(),
                "where's my parcel".to_string(),
            ])
        );
        assert_eq!(prefilter_literals("^Hi"), Some(vec!["hi".to_string()]));
        assert_eq!(prefilter_literals(".*refund"), None);
        assert_eq!(prefilter_literals(r"\w+ please"), None);
        assert_eq!(prefilter_literals("grüß gott"), None);
        // Too many alternatives: shortened to their shared starts.
        let many = prefilter_literals(
            r"\bare you (?:a |an )?(?:real |actual |live )?(?:bot|robot|human|person|machine|ai|chatbot|computer|program|gpt)\b",
        )
        .unwrap();
        assert!(
            many.len() <= 64 && many.iter().all(|l| l.starts_with("are ")),
            "{many:?}"
        );
    }

    #[test]
    fn unfiltered_and_prefiltered_patterns_both_match() {
        let i = Intents::compile(
            "[[intent]]\nid = \"a\"\npatterns = ['.*refund']\nresponse = \"r\"\n\
             [[intent]]\nid = \"b\"\npatterns = ['TRACK(?:ing)? (?:number|code)']\nresponse = \"t\"\n\
             [[intent]]\nid = \"c\"\npatterns = ['^\\w+ me$', '^\\w+!+$']\nresponse = \"c\"\n",
            Path::new("i.toml"),
        )
        .unwrap();
        // Two patterns anchored at the start and one not run on every message.
        assert_eq!(i.unfiltered[0].1.len(), 2);
        assert_eq!(i.unfiltered[1].1.len(), 1);
        assert_eq!(i.unfiltered_patterns().count(), 3);
        let ids = |t: &str| -> Vec<String> {
            let mut ids: Vec<String> = i
                .find(t)
                .iter()
                .map(|m| i.intents[m.intent].id.clone())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids("my Refund please"), ["a"]);
        assert_eq!(ids("what's my tracking code, and my refund"), ["a", "b"]);
        assert!(ids("tracks").is_empty());
        assert_eq!(ids("Help me"), ["c"]);
        assert_eq!(ids("no!"), ["c"]);
        assert!(ids("please help me").is_empty());
        assert!(ids("I said no").is_empty());
    }

    #[test]
    fn unicode_patterns_still_match() {
        let i = intents();
        let found = i.find("GRÜß GOTT");
        assert_eq!(i.intents[found[0].intent].id, "grüße");
    }

    #[test]
    fn the_prefilter_finds_what_unicode_patterns_match_in_tidy_text() {
        // \p{L} makes these Unicode patterns, where k and s also match the
        // Kelvin sign and the long s; their ASCII prefixes still find them,
        // because tidy text has those letters as k and s.
        let i = Intents::compile(
            r#"
[[intent]]
id = "parcel"
patterns = ["where(?:'s| is) my parcel\\b\\P{L}*$"]
response = "p"
[[intent]]
id = "track"
patterns = ["track(?:ing)? code\\P{L}*$"]
response = "t"
"#,
            Path::new("i.toml"),
        )
        .unwrap();
        let id = |t: &str| {
            let found = i.find(&crate::text::tidy(t));
            found.first().map(|m| i.intents[m.intent].id.clone())
        };
        assert_eq!(id("where\u{2019}s my parcel").as_deref(), Some("parcel"));
        assert_eq!(id("WHERE IS MY PARCEL?").as_deref(), Some("parcel"));
        assert_eq!(id("where'\u{17F} my parcel").as_deref(), Some("parcel"));
        assert_eq!(id("my trac\u{212A}ing code").as_deref(), Some("track"));
        assert_eq!(id("where was my parcel"), None);
        assert_eq!(i.unfiltered_patterns().count(), 0);
    }

    #[test]
    fn slots_fill_from_their_pattern() {
        let i = intents();
        let slot = &i.get("order_status").unwrap().slots[0];
        assert_eq!(slot.find("where is fd-123456?").as_deref(), Some("123456"));
        assert_eq!(
            fill(
                "Order {order_number}.",
                &[("order_number".into(), "1".into())]
            ),
            "Order 1."
        );
    }

    #[test]
    fn bad_regex_names_the_intent_and_line() {
        let bad = "[[intent]]\nid = \"broken\"\npatterns = ['(unclosed']\nresponse = \"x\"\n";
        let e = Intents::compile(bad, Path::new("i.toml")).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("broken"), "{e}");
    }

    #[test]
    fn unknown_placeholder_is_refused() {
        let bad = "[[intent]]\nid = \"x\"\nkeywords = ['a']\nresponse = \"{nope}\"\n";
        let e = Intents::compile(bad, Path::new("i.toml")).unwrap_err();
        assert!(e.to_string().contains("{nope}"), "{e}");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let e = Intents::compile("\n\n[[intent]\n", Path::new("i.toml")).unwrap_err();
        assert_eq!(e.line, Some(3));
    }
}
