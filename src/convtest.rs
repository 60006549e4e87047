//! `frontdesk test`: conversation tests written by editors, run against the
//! engine without a server. A file holds `[[test]]` tables, each with turns:
//!
//! ```toml
//! [[test]]
//! name = "order status asks for the number"
//! [[test.turn]]
//! say = "where is my order"
//! expect = "order_status"          # intent id, article id, or: fallback | escalate | clarify
//! kind = "clarify"                 # optional: answer | clarify | fallback | escalate
//! reply_contains = "order number"  # optional, case-insensitive
//! [[test.turn]]
//! say = "FD-123456"
//! expect = "order_status"
//! ```
//!
//! A turn may `choose = "article:returns/start-a-return.md"` (a quick reply)
//! instead of `say`. The engine context carries over from turn to turn.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::EngineConfig;
use crate::content::Content;
use crate::engine::{self, Context, Kind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    test: Vec<toml::Spanned<Test>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Test {
    name: String,
    turn: Vec<toml::Spanned<Turn>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Turn {
    say: Option<String>,
    choose: Option<String>,
    expect: Option<String>,
    kind: Option<Kind>,
    reply_contains: Option<String>,
}

/// One failed turn.
#[derive(Debug, Clone)]
pub struct Failure {
    pub file: PathBuf,
    pub line: usize,
    pub test: String,
    pub turn: usize,
    pub said: String,
    pub problems: Vec<String>,
    pub got: String,
}

/// Results of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub tests: usize,
    pub turns: usize,
    pub failures: Vec<Failure>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// A readable account of what differed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.failures {
            let _ = writeln!(
                out,
                "FAIL {}:{}: {} (turn {})",
                f.file.display(),
                f.line,
                f.test,
                f.turn
            );
            let _ = writeln!(out, "  visitor:  {}", f.said);
            for p in &f.problems {
                let _ = writeln!(out, "  expected: {p}");
            }
            let _ = writeln!(out, "  got:      {}\n", f.got);
        }
        let failed_tests = {
            let mut names: Vec<(&PathBuf, &str)> = self
                .failures
                .iter()
                .map(|f| (&f.file, f.test.as_str()))
                .collect();
            names.dedup();
            names.len()
        };
        let _ = write!(
            out,
            "{} tests, {} turns: {} passed, {} failed",
            self.tests,
            self.turns,
            self.tests - failed_tests,
            failed_tests
        );
        out
    }
}

/// Reads and runs test files against the content.
pub fn run(files: &[PathBuf], content: &Content, cfg: &EngineConfig) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: File = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
            anyhow::anyhow!("{}:{}: {}", path.display(), line, e.message())
        })?;
        for test in file.test {
            let test = test.into_inner();
            report.tests += 1;
            let mut ctx = Context::default();
            for (n, turn) in test.turn.into_iter().enumerate() {
                let line = line_of(turn.span().start);
                let turn = turn.into_inner();
                report.turns += 1;
                let (said, decision) = match (&turn.say, &turn.choose) {
                    (Some(s), None) => (s.clone(), engine::decide(content, &ctx, s, cfg)),
                    (None, Some(c)) => (
                        format!("(chooses {c})"),
                        engine::choose(content, &ctx, c, cfg),
                    ),
                    _ => anyhow::bail!(
                        "{}:{line}: a turn needs exactly one of `say` and `choose`",
                        path.display()
                    ),
                };
                let problems = check_turn(&turn, &decision);
                if !problems.is_empty() {
                    report.failures.push(Failure {
                        file: path.clone(),
                        line,
                        test: test.name.clone(),
                        turn: n + 1,
                        said,
                        problems,
                        got: describe(&decision),
                    });
                }
                ctx = decision.next;
            }
        }
    }
    Ok(report)
}

fn check_turn(turn: &Turn, d: &engine::Decision) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(expect) = &turn.expect {
        let ok = match expect.as_str() {
            "fallback" => d.kind == Kind::Fallback,
            "escalate" => d.kind == Kind::Escalate,
            "clarify" => d.kind == Kind::Clarify,
            id => d.source.as_ref().is_some_and(|s| s.id == id),
        };
        if !ok {
            problems.push(format!("source {expect}"));
        }
    }
    if let Some(kind) = turn.kind {
        if d.kind != kind {
            problems.push(format!("kind {}", kind.as_str()));
        }
    }
    if let Some(fragment) = &turn.reply_contains {
        if !d.text.to_lowercase().contains(&fragment.to_lowercase()) {
            problems.push(format!("reply containing {fragment:?}"));
        }
    }
    problems
}

fn describe(d: &engine::Decision) -> String {
    let source = d
        .source
        .as_ref()
        .map_or("no source".to_string(), |s| format!("source {}", s.id));
    let choices = if d.quick_replies.is_empty() {
        String::new()
    } else {
        format!(
            " [choices: {}]",
            d.quick_replies
                .iter()
                .map(|q| q.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "{} from {source}: {:?}{choices} ({})",
        d.kind.as_str(),
        d.text,
        d.explanation.rule
    )
}

/// The `.toml` files in a directory, sorted; a file is returned as is.
pub fn discover(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intents::Intents;
    use crate::kb::KnowledgeBase;

    fn content() -> Content {
        let intents = Intents::compile(
            "[[intent]]\nid = \"hi\"\npatterns = ['^hi$']\nresponse = \"Hello there\"\n",
            Path::new("i.toml"),
        )
        .unwrap();
        let kb = KnowledgeBase::build(Path::new("kb"), vec![], &intents.synonyms).unwrap();
        Content::new(intents, kb)
    }

    fn run_text(toml: &str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, toml).unwrap();
        run(&[path], &content(), &EngineConfig::default()).unwrap()
    }

    #[test]
    fn passing_and_failing_turns_are_reported() {
        let report = run_text(
            r#"
[[test]]
name = "greets"
[[test.turn]]
say = "hi"
expect = "hi"
reply_contains = "hello"

[[test]]
name = "wrong expectation"
[[test.turn]]
say = "hi"
expect = "goodbye"
kind = "fallback"
reply_contains = "bye"
"#,
        );
        assert_eq!(report.tests, 2);
        assert_eq!(report.failures.len(), 1);
        let f = &report.failures[0];
        assert_eq!(f.test, "wrong expectation");
        assert_eq!(f.line, 11);
        assert_eq!(
            f.problems,
            [
                "source goodbye",
                "kind fallback",
                "reply containing \"bye\""
            ]
        );
        let text = report.render();
        assert!(
            text.contains("got:      answer from source hi: \"Hello there\""),
            "{text}"
        );
        assert!(
            text.ends_with("2 tests, 2 turns: 1 passed, 1 failed"),
            "{text}"
        );
    }
}
