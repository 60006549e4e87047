//! `frontdesk eval`: run labelled visitor phrasings through the engine and
//! measure how often it answers right, offers the right choice, answers wrong,
//! or declines.
//!
//! Each line is `{"text": "...", "expect": "<intent id> | <article id> | none"}`.
//! In scope, an answer from the expected source is right, and so is a clarify
//! that offers it (the visitor is one click away). `none` means nothing should
//! answer: a fallback or an escalation is right, an answer or clarify is wrong.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::content::Content;
use crate::engine::{self, Context, Kind, CHOICE_ARTICLE};

#[derive(Debug, Deserialize)]
struct Case {
    text: String,
    expect: String,
}

/// The outcome of one eval line.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub text: String,
    pub expect: String,
    pub kind: Kind,
    pub source: Option<String>,
    pub score: f32,
    pub correct: bool,
    /// For a clarify: the offered article ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// The best-scoring articles whatever was decided: (id, confidence).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<(String, f32)>,
}

/// Totals over an eval file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub total: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub in_scope: usize,
    /// Answered from the expected source.
    pub answered_right: usize,
    /// Clarify that offered the expected article.
    pub clarified_right: usize,
    /// (answered_right + clarified_right) / in_scope.
    pub resolved_rate: f64,
    /// Answered from another source.
    pub answered_wrong: usize,
    /// Clarify without the expected article among the choices.
    pub clarified_wrong: usize,
    /// Fell back or escalated although an answer was expected.
    pub rejected: usize,
    pub out_of_scope: usize,
    /// Out of scope and answered or clarified anyway.
    pub falsely_answered: usize,
    /// falsely_answered / out_of_scope.
    pub false_answer_rate: f64,
}

/// Reads and runs an eval file.
pub fn run(
    path: &Path,
    content: &Content,
    cfg: &EngineConfig,
) -> anyhow::Result<(Summary, Vec<CaseResult>)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        let known = case.expect == "none"
            || content.intents.get(&case.expect).is_some()
            || content.kb.get(&case.expect).is_some();
        if !known {
            anyhow::bail!(
                "{}:{}: expect {:?} is neither an intent id, an article id nor \"none\"",
                path.display(),
                i + 1,
                case.expect
            );
        }
        cases.push(case);
    }
    let results: Vec<CaseResult> = cases
        .into_iter()
        .map(|c| evaluate(content, cfg, c))
        .collect();
    Ok((summarize(&results), results))
}

fn evaluate(content: &Content, cfg: &EngineConfig, case: Case) -> CaseResult {
    let d = engine::decide(content, &Context::default(), &case.text, cfg);
    let source = d.source.as_ref().map(|s| s.id.clone());
    let choices: Vec<String> = if d.kind == Kind::Clarify {
        d.quick_replies
            .iter()
            .filter_map(|q| {
                q.value
                    .strip_prefix(CHOICE_ARTICLE)
                    .or_else(|| q.value.strip_prefix(engine::CHOICE_INTENT))
                    .map(str::to_string)
            })
            .collect()
    } else {
        Vec::new()
    };
    let correct = if case.expect == "none" {
        matches!(d.kind, Kind::Fallback | Kind::Escalate)
            && !matches!(
                d.escalation,
                Some(engine::EscalationReason::Requested)
                    | Some(engine::EscalationReason::IntentRule)
            )
    } else {
        source.as_deref() == Some(case.expect.as_str()) || choices.contains(&case.expect)
    };
    let candidates = d
        .explanation
        .articles
        .iter()
        .map(|a| (a.id.clone(), a.confidence))
        .collect();
    CaseResult {
        text: case.text,
        expect: case.expect,
        kind: d.kind,
        source,
        score: d.score,
        correct,
        choices,
        candidates,
    }
}

/// Totals of a set of results.
pub fn summarize(results: &[CaseResult]) -> Summary {
    let mut s = Summary {
        total: results.len(),
        ..Summary::default()
    };
    for r in results {
        if r.correct {
            s.correct += 1;
        }
        if r.expect == "none" {
            s.out_of_scope += 1;
            if !r.correct {
                s.falsely_answered += 1;
            }
            continue;
        }
        s.in_scope += 1;
        match r.kind {
            Kind::Answer | Kind::Escalate if r.correct => s.answered_right += 1,
            Kind::Clarify if r.correct && r.choices.is_empty() => s.answered_right += 1,
            Kind::Clarify if r.correct => s.clarified_right += 1,
            Kind::Answer => s.answered_wrong += 1,
            Kind::Clarify => s.clarified_wrong += 1,
            Kind::Fallback | Kind::Escalate => s.rejected += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.accuracy = ratio(s.correct, s.total);
    s.resolved_rate = ratio(s.answered_right + s.clarified_right, s.in_scope);
    s.false_answer_rate = ratio(s.falsely_answered, s.out_of_scope);
    s
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |x: f64| x * 100.0;
        writeln!(f, "cases            {}", self.total)?;
        writeln!(
            f,
            "accuracy         {:.1}% ({} of {})",
            pct(self.accuracy),
            self.correct,
            self.total
        )?;
        writeln!(f, "in scope         {}", self.in_scope)?;
        writeln!(
            f,
            "  resolved       {:.1}% (answered right {}, right article offered {})",
            pct(self.resolved_rate),
            self.answered_right,
            self.clarified_right
        )?;
        writeln!(
            f,
            "  wrong answers  {} (answered {}, choices without it {})",
            self.answered_wrong + self.clarified_wrong,
            self.answered_wrong,
            self.clarified_wrong
        )?;
        writeln!(f, "  rejected       {}", self.rejected)?;
        writeln!(f, "out of scope     {}", self.out_of_scope)?;
        write!(
            f,
            "  falsely answered {:.1}% ({} of {})",
            pct(self.false_answer_rate),
            self.falsely_answered,
            self.out_of_scope
        )
    }
}
