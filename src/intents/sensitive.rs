//! Sensitive content: terms (one aho-corasick automaton, whole words) and
//! regexes (card numbers with a Luhn check, IBANs, ...). A hit escalates the
//! conversation; rules marked `redact` also hide what matched before the text
//! is stored or logged.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::text::is_whole_word;

/// Placeholder written where a redacted match was.
pub const REDACTED: &str = "[redacted]";

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct SensitiveRule {
    pub id: String,
    pub patterns: Vec<Regex>,
    pub luhn: bool,
    pub redact: bool,
    pub response: Option<String>,
}

/// All sensitive rules of a content snapshot.
#[derive(Debug, Clone, Default)]
pub struct Sensitive {
    pub rules: Vec<SensitiveRule>,
    /// Reply on a sensitive escalation when the rule has none of its own.
    pub response: Option<String>,
    terms: Option<AhoCorasick>,
    /// Rule index of each term in `terms`.
    term_rule: Vec<usize>,
    /// Every rule's patterns in one automaton, so a text with nothing
    /// sensitive in it (nearly every message) is read once, not once a
    /// pattern; `None` when the set would be too large to build.
    patterns: Option<RegexSet>,
    /// (rule, pattern) of each member of `patterns`.
    pattern_owner: Vec<(usize, usize)>,
}

/// What a scan found: the rules hit (in rule order, once each) and the text
/// with every `redact` match replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub rules: Vec<usize>,
    pub redacted: String,
}

impl Sensitive {
    /// Builds the automaton over every rule's terms.
    pub fn new(rules: Vec<(SensitiveRule, Vec<String>)>, response: Option<String>) -> Self {
        let mut terms = Vec::new();
        let mut term_rule = Vec::new();
        let mut compiled = Vec::new();
        for (i, (rule, rule_terms)) in rules.into_iter().enumerate() {
            for t in rule_terms {
                let t = crate::text::normalize(&t);
                if !t.is_empty() {
                    terms.push(t);
                    term_rule.push(i);
                }
            }
            compiled.push(rule);
        }
        let automaton = (!terms.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .ascii_case_insensitive(true)
                .build(&terms)
                .expect("sensitive terms within automaton size limits")
        });
        let pattern_owner: Vec<(usize, usize)> = compiled
            .iter()
            .enumerate()
            .flat_map(|(i, r)| (0..r.patterns.len()).map(move |j| (i, j)))
            .collect();
        // Case-insensitive, so the set finds at least what each pattern
        // finds however it was built; the pattern itself then decides.
        let patterns = RegexSetBuilder::new(
            compiled
                .iter()
                .flat_map(|r| r.patterns.iter().map(Regex::as_str)),
        )
        .case_insensitive(true)
        .build()
        .ok();
        Sensitive {
            rules: compiled,
            response,
            terms: automaton,
            term_rule,
            patterns,
            pattern_owner,
        }
    }

    /// Scans raw visitor text. Terms are matched on its lowercase form; redaction
    /// positions come from the patterns, which run on the text as given.
    pub fn scan(&self, text: &str) -> Scan {
        let mut hit = vec![false; self.rules.len()];
        if let Some(ac) = &self.terms {
            let lower = crate::text::normalize(text);
            for m in ac.find_iter(&lower) {
                if is_whole_word(&lower, m.start(), m.end()) {
                    hit[self.term_rule[m.pattern().as_usize()]] = true;
                }
            }
        }
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut check = |i: usize, re: &Regex| {
            let rule = &self.rules[i];
            for m in re.find_iter(text) {
                if rule.luhn && !luhn_valid(m.as_str()) {
                    continue;
                }
                hit[i] = true;
                if rule.redact {
                    spans.push((m.start(), m.end()));
                }
            }
        };
        match &self.patterns {
            Some(set) => {
                for k in set.matches(text).iter() {
                    let (i, j) = self.pattern_owner[k];
                    check(i, &self.rules[i].patterns[j]);
                }
            }
            None => {
                for (i, rule) in self.rules.iter().enumerate() {
                    for re in &rule.patterns {
                        check(i, re);
                    }
                }
            }
        }
        let redacted = if spans.is_empty() {
            text.to_string()
        } else {
            spans.sort_unstable();
            let mut out = String::with_capacity(text.len());
            let mut last = 0;
            for (s, e) in spans {
                if s < last {
                    // Overlaps a span already redacted; extend it.
                    last = last.max(e);
                    continue;
                }
                out.push_str(&text[last..s]);
                out.push_str(REDACTED);
                last = e;
            }
            out.push_str(&text[last..]);
            out
        };
        Scan {
            rules: hit
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.then_some(i))
                .collect(),
            redacted,
        }
    }
}

/// Luhn checksum over the digits of `s` (other characters ignored); needs 12-19 digits.
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Sensitive {
        Sensitive::new(
            vec![
                (
                    SensitiveRule {
                        id: "legal".into(),
                        patterns: vec![],
                        luhn: false,
                        redact: false,
                        response: None,
                    },
                    vec!["lawyer".into(), "sue you".into()],
                ),
                (
                    SensitiveRule {
                        id: "card".into(),
                        patterns: vec![Regex::new(r"\b(?:\d[ -]?){12,18}\d\b").unwrap()],
                        luhn: true,
                        redact: true,
                        response: None,
                    },
                    vec![],
                ),
            ],
            None,
        )
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(!luhn_valid("1234"));
    }

    #[test]
    fn card_numbers_are_redacted_only_when_luhn_valid() {
        let s = rules();
        let scan = s.scan("my card is 4111-1111-1111-1111, ok?");
        assert_eq!(scan.rules, vec![1]);
        assert_eq!(scan.redacted, "my card is [redacted], ok?");
        let scan = s.scan("order 4111 1111 1111 1112");
        assert!(scan.rules.is_empty());
        assert_eq!(scan.redacted, "order 4111 1111 1111 1112");
    }

    #[test]
    fn terms_match_whole_words_case_insensitively() {
        let s = rules();
        assert_eq!(s.scan("I will SUE YOU").rules, vec![0]);
        assert_eq!(s.scan("my Lawyer said").rules, vec![0]);
        assert!(s.scan("lawyers-ish? no: sue your").rules.is_empty());
    }

    #[test]
    fn only_the_patterns_the_set_finds_are_run_and_each_keeps_its_own_case_rule() {
        let s = Sensitive::new(
            vec![
                (
                    SensitiveRule {
                        id: "upper".into(),
                        patterns: vec![Regex::new(r"ACCT-\d{4}").unwrap()],
                        luhn: false,
                        redact: true,
                        response: None,
                    },
                    vec![],
                ),
                (
                    SensitiveRule {
                        id: "two".into(),
                        patterns: vec![
                            Regex::new(r"pin \d{4}").unwrap(),
                            Regex::new(r"(?i)password: \S+").unwrap(),
                        ],
                        luhn: false,
                        redact: true,
                        response: None,
                    },
                    vec![],
                ),
            ],
            None,
        );
        assert!(s.patterns.is_some());
        // The set is case-insensitive; the case-sensitive pattern still decides.
        let scan = s.scan("acct-1234 is mine");
        assert!(scan.rules.is_empty());
        assert_eq!(scan.redacted, "acct-1234 is mine");
        let scan = s.scan("ACCT-1234, Password: hunter2 and pin 9999");
        assert_eq!(scan.rules, vec![0, 1]);
        assert_eq!(scan.redacted, "[redacted], [redacted] and [redacted]");
        let scan = s.scan("nothing here");
        assert!(scan.rules.is_empty());
    }
}
