//! Content gaps: what visitors asked that nothing answered, or that got an
//! answer they marked not helpful, grouped by similarity and ranked by count,
//! each group with examples and the nearest article. This is what an editor
//! reads to decide what to write next.

use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;
use serde::Serialize;

use crate::content::Content;
use crate::store::StoreError;

/// Why a question is a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// The bot only fell back.
    Unanswered,
    /// The visitor marked the answer not helpful.
    NotHelpful,
}

/// Questions that belong together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    pub count: u64,
    pub unanswered: u64,
    pub not_helpful: u64,
    /// The words most of its questions share (as visitors wrote them).
    pub terms: Vec<String>,
    /// Distinct questions, most asked first (at most five).
    pub examples: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest_article: Option<Nearest>,
}

/// The article closest to a gap, by the engine's own scoring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nearest {
    pub id: String,
    pub title: String,
    pub confidence: f32,
}

/// Unanswered and not-helpful questions asked in `[from, to)`.
pub fn questions(c: &Connection, from: i64, to: i64) -> Result<Vec<(String, GapKind)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT m.text, 0 FROM decisions d JOIN decision_contents k ON k.id = d.content_id
         JOIN messages m ON m.seq = d.message_seq
         WHERE (k.kind = 'fallback' OR (k.kind = 'escalate' AND k.escalation_reason = 'repeated_fallback'))
           AND d.rowid >= ?3 AND d.rowid < ?4
           AND d.created_at >= ?1 AND d.created_at < ?2 AND m.role = 'visitor'
         UNION ALL
         SELECT m.text, 1 FROM feedback f
         JOIN decisions d ON d.answer_id = f.answer_id
         JOIN messages m ON m.seq = d.message_seq
         WHERE f.helpful = 0 AND f.created_at >= ?1 AND f.created_at < ?2 AND m.role = 'visitor'",
    )?;
    let (rows_from, rows_to) = crate::store::decision_rowids(c, from, to)?;
    let rows = stmt.query_map([from, to, rows_from, rows_to], |r| {
        let kind: i64 = r.get(1)?;
        Ok((
            r.get::<_, String>(0)?,
            if kind == 0 {
                GapKind::Unanswered
            } else {
                GapKind::NotHelpful
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A question's words as the matcher sees them (stemmed, no stop words),
/// remembering for each stem the first word it came from.
fn term_set(
    analyzer: &mut tantivy::tokenizer::TextAnalyzer,
    text: &str,
    words: &mut HashMap<String, String>,
) -> Vec<String> {
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if let [stem] = crate::text::terms(analyzer, word).as_slice() {
            words
                .entry(stem.clone())
                .or_insert_with(|| word.to_lowercase());
        }
    }
    let mut t = crate::text::terms(analyzer, text);
    t.sort();
    t.dedup();
    t
}

/// How alike two term sets are: shared terms over the smaller set, so that
/// "refund" and "how do I get a refund for a gift" belong together, but a
/// single shared word between two long questions does not make them one.
fn alike(a: &[String], b: &[String]) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let shared = a.iter().filter(|t| b.binary_search(t).is_ok()).count();
    let smaller = a.len().min(b.len());
    let larger = a.len().max(b.len());
    // Most of the shorter question, and a fair part of the longer one.
    shared * 3 >= smaller * 2 && shared * 3 >= larger
}

/// Groups questions by similarity and ranks the groups by size; `limit`
/// groups at most. `content` names the nearest article of each.
pub fn group(questions: &[(String, GapKind)], content: Option<&Content>, limit: usize) -> Vec<Gap> {
    let mut analyzer = crate::text::analyzer();
    let mut words: HashMap<String, String> = HashMap::new();
    // Identical questions (after normalising) first.
    let mut same: HashMap<String, (String, u64, u64)> = HashMap::new();
    for (text, kind) in questions {
        let key = crate::text::normalize(text)
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_string();
        if key.is_empty() {
            continue;
        }
        let e = same
            .entry(key)
            .or_insert_with(|| (text.trim().to_string(), 0, 0));
        match kind {
            GapKind::Unanswered => e.1 += 1,
            GapKind::NotHelpful => e.2 += 1,
        }
    }
    let mut distinct: Vec<(String, String, u64, u64)> = same
        .into_iter()
        .map(|(key, (text, u, n))| (key, text, u, n))
        .collect();
    // Most asked first, so each group is led by its most common phrasing.
    distinct.sort_by(|a, b| (b.2 + b.3).cmp(&(a.2 + a.3)).then_with(|| a.0.cmp(&b.0)));

    struct Building {
        terms: Vec<String>,
        members: Vec<(String, u64)>,
        unanswered: u64,
        not_helpful: u64,
        term_counts: BTreeMap<String, u64>,
    }
    let mut groups: Vec<Building> = Vec::new();
    for (_, text, unanswered, not_helpful) in distinct {
        let terms = term_set(&mut analyzer, &text, &mut words);
        let n = unanswered + not_helpful;
        let found = if terms.is_empty() {
            None
        } else {
            groups.iter().position(|g| alike(&g.terms, &terms))
        };
        let g = match found {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Building {
                    terms: terms.clone(),
                    members: Vec::new(),
                    unanswered: 0,
                    not_helpful: 0,
                    term_counts: BTreeMap::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        g.members.push((text, n));
        g.unanswered += unanswered;
        g.not_helpful += not_helpful;
        for t in terms {
            *g.term_counts.entry(t).or_default() += n;
        }
    }
    groups.sort_by(|a, b| {
        (b.unanswered + b.not_helpful)
            .cmp(&(a.unanswered + a.not_helpful))
            .then_with(|| a.members[0].0.cmp(&b.members[0].0))
    });
    groups.truncate(limit);
    groups
        .into_iter()
        .map(|g| {
            let count = g.unanswered + g.not_helpful;
            let mut terms: Vec<(String, u64)> = g.term_counts.into_iter().collect();
            terms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let examples: Vec<String> = g.members.iter().take(5).map(|m| m.0.clone()).collect();
            let nearest = content.and_then(|c| nearest_article(c, &examples[0]));
            Gap {
                count,
                unanswered: g.unanswered,
                not_helpful: g.not_helpful,
                terms: terms
                    .into_iter()
                    .filter(|t| t.1 * 2 >= count)
                    .take(6)
                    .map(|t| words.get(&t.0).cloned().unwrap_or(t.0))
                    .collect(),
                examples,
                nearest_article: nearest,
            }
        })
        .collect()
}

/// The best-scoring real article for `text`, however low its confidence.
fn nearest_article(content: &Content, text: &str) -> Option<Nearest> {
    let search = content.kb.search(text, 10);
    search.hits.iter().find_map(|h| {
        let a = &content.kb.articles[h.article];
        (!a.id.starts_with("intent:")).then(|| Nearest {
            id: a.id.clone(),
            title: a.title.clone(),
            confidence: h.confidence,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(texts: &[(&str, GapKind)]) -> Vec<(String, GapKind)> {
        texts.iter().map(|(t, k)| (t.to_string(), *k)).collect()
    }

    #[test]
    fn similar_questions_group_and_rank_by_count() {
        use GapKind::*;
        let questions = q(&[
            ("Do you ship to Iceland?", Unanswered),
            ("do you ship to iceland", Unanswered),
            ("shipping to Iceland?", Unanswered),
            ("can you ship to iceland please", NotHelpful),
            ("Do you sell gift cards?", Unanswered),
            ("gift card", Unanswered),
            ("what is the meaning of life", Unanswered),
            ("???", Unanswered),
        ]);
        let gaps = group(&questions, None, 10);
        assert_eq!(gaps.len(), 3, "{gaps:#?}");
        assert_eq!(gaps[0].count, 4);
        assert_eq!((gaps[0].unanswered, gaps[0].not_helpful), (3, 1));
        assert_eq!(gaps[0].examples[0], "Do you ship to Iceland?");
        assert!(
            gaps[0].terms.contains(&"iceland".to_string()),
            "{:?}",
            gaps[0].terms
        );
        assert_eq!(gaps[1].count, 2);
        assert!(gaps[1].examples.iter().any(|e| e == "gift card"));
        assert_eq!(gaps[2].examples, ["what is the meaning of life"]);
        assert_eq!(group(&questions, None, 1).len(), 1);
    }

    #[test]
    fn one_shared_word_does_not_join_long_questions() {
        let a = vec![
            "deliveri".into(),
            "late".into(),
            "parcel".into(),
            "track".into(),
        ];
        let b = vec![
            "account".into(),
            "delet".into(),
            "parcel".into(),
            "password".into(),
        ];
        assert!(!alike(&a, &b));
        let c = vec!["parcel".into(), "track".into()];
        assert!(alike(&a, &c));
    }
}
