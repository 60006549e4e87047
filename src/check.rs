//! `frontdesk check`: lints over content that loads but is probably not what
//! the editor meant. Each finding names a file and line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::content::Content;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "{}:{}: warning: {}",
                self.file.display(),
                l,
                self.message
            ),
            None => write!(f, "{}: warning: {}", self.file.display(), self.message),
        }
    }
}

/// Lints the content. `intents_path` names the intents file in findings.
pub fn lint(content: &Content, intents_path: &Path) -> Vec<Warning> {
    let mut out = Vec::new();
    lint_intents(content, intents_path, &mut out);
    lint_articles(content, &mut out);
    out
}

fn lint_intents(content: &Content, path: &Path, out: &mut Vec<Warning>) {
    let intents = &content.intents;
    let warn = |line: usize, message: String| Warning {
        file: path.to_path_buf(),
        line: Some(line),
        message,
    };
    for intent in &intents.intents {
        let examples: Vec<String> = intent
            .examples
            .iter()
            .map(|e| intents.synonyms.apply(&crate::text::tidy(e)))
            .collect();
        // A pattern none of the examples exercise is untested at best.
        if !examples.is_empty() {
            for (i, src) in intent.pattern_sources().enumerate() {
                if !examples.iter().any(|e| intent.pattern_matches(i, e)) {
                    out.push(warn(
                        intent.pattern_lines[i],
                        format!(
                            "intent {:?}: pattern {src:?} matches none of its examples",
                            intent.id
                        ),
                    ));
                }
            }
        }
        for (example, text) in intent.examples.iter().zip(&examples) {
            // The same matcher the engine uses, so the lint sees what visitors get.
            let found = intents.find(text);
            if !found
                .iter()
                .any(|m| intents.intents[m.intent].id == intent.id)
            {
                out.push(warn(
                    intent.line,
                    format!("intent {:?}: example {example:?} is matched by none of its patterns or keywords", intent.id),
                ));
                continue;
            }
            let winner = &intents.intents[found[0].intent];
            if winner.id != intent.id {
                out.push(warn(
                    intent.line,
                    format!(
                        "intent {:?}: example {example:?} is taken by intent {:?} (priority {} vs {})",
                        intent.id, winner.id, winner.priority, intent.priority
                    ),
                ));
            }
        }
        let phrases = intent
            .examples
            .iter()
            .map(|e| ("example", e, "trips", " and will escalate"))
            .chain(
                intent
                    .keywords
                    .iter()
                    .map(|k| ("keyword", k, "is shadowed by", "")),
            );
        for (what, phrase, verb, consequence) in phrases {
            if let Some(&rule) = intents.sensitive.scan(phrase).rules.first() {
                out.push(warn(
                    intent.line,
                    format!(
                        "intent {:?}: {what} {phrase:?} {verb} sensitive rule {:?}{consequence}",
                        intent.id, intents.sensitive.rules[rule].id
                    ),
                ));
            }
        }
    }
}

fn lint_articles(content: &Content, out: &mut Vec<Warning>) {
    let kb = &content.kb;
    let mut titles: HashMap<String, &str> = HashMap::new();
    for a in kb.documents() {
        let file = kb.dir().join(&a.id);
        if a.body.trim().is_empty() {
            out.push(Warning {
                file: file.clone(),
                line: Some(a.body_line),
                message: "the body is empty: answers from this article would say nothing".into(),
            });
        }
        if a.questions.is_empty() {
            out.push(Warning {
                file: file.clone(),
                line: Some(1),
                message: "no `questions` in the front matter: only the title and body can match"
                    .into(),
            });
        }
        let key = crate::text::normalize(&a.title);
        if let Some(other) = titles.insert(key, &a.id) {
            out.push(Warning {
                file: file.clone(),
                line: Some(1),
                message: format!("title {:?} is also the title of {other}", a.title),
            });
        }
        for (offset, line) in a.body.lines().enumerate() {
            for target in markdown_links(line) {
                if target.contains("://")
                    || target.starts_with('#')
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let target = target.split('#').next().unwrap_or("");
                if !target.ends_with(".md") {
                    continue;
                }
                let resolved = resolve(&a.id, target);
                if resolved.as_ref().is_none_or(|id| kb.get(id).is_none()) {
                    out.push(Warning {
                        file: file.clone(),
                        line: Some(a.body_line + offset),
                        message: format!("link to {target:?} points to no article"),
                    });
                }
            }
        }
    }
}

/// Targets of `[text](target)` links in a line.
fn markdown_links(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) => {
                out.push(after[..end].trim());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Resolves a relative link from the article `from` to an article id.
fn resolve(from: &str, target: &str) -> Option<String> {
    let base = Path::new(from).parent().unwrap_or(Path::new(""));
    let mut parts: Vec<String> = Vec::new();
    for c in base.join(target).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intents::Intents;
    use crate::kb::{Article, KnowledgeBase};

    #[test]
    fn relative_links_resolve() {
        assert_eq!(
            resolve("returns/policy.md", "../shipping/times.md").as_deref(),
            Some("shipping/times.md")
        );
        assert_eq!(
            resolve("returns/policy.md", "label.md").as_deref(),
            Some("returns/label.md")
        );
        assert_eq!(resolve("a.md", "../../x.md"), None);
        assert_eq!(
            markdown_links("see [a](x.md) and [b](https://e.x)"),
            ["x.md", "https://e.x"]
        );
    }

    #[test]
    fn each_lint_is_caught() {
        let intents = Intents::compile(
            r#"
[[intent]]
id = "refund"
patterns = ['\brefund\b', '\bmoney back\b']
keywords = ["lawyer up"]
examples = ["i want a refund", "where is my order"]
response = "r"

[[intent]]
id = "order"
priority = 5
patterns = ['\border\b']
examples = ["my order"]
response = "o"

[[intent]]
id = "low"
patterns = ['\bmy order\b']
examples = ["my order please"]
response = "l"

[sensitive]
[[sensitive.rule]]
id = "legal"
terms = ["lawyer"]
"#,
            Path::new("intents.toml"),
        )
        .unwrap();
        let art = |id: &str, title: &str, body: &str| {
            Article::parse(
                id.into(),
                &format!("---\ntitle: \"{title}\"\nquestions: [\"q\"]\n---\n{body}"),
                Path::new(id),
            )
            .unwrap()
        };
        let kb = KnowledgeBase::build(
            Path::new("kb"),
            vec![
                art("a.md", "Same", "See [b](b.md) and [gone](missing.md)."),
                art("b.md", "same", ""),
            ],
            &intents.synonyms,
        )
        .unwrap();
        let content = Content::new(intents, kb);
        let found: Vec<String> = lint(&content, Path::new("intents.toml"))
            .iter()
            .map(|w| w.to_string())
            .collect();
        let has = |needle: &str| found.iter().any(|w| w.contains(needle));
        assert!(
            has("pattern \"\\\\bmoney back\\\\b\" matches none of its examples"),
            "{found:#?}"
        );
        assert!(
            has("example \"where is my order\" is matched by none"),
            "{found:#?}"
        );
        assert!(
            has("example \"my order please\" is taken by intent \"order\""),
            "{found:#?}"
        );
        assert!(
            has("keyword \"lawyer up\" is shadowed by sensitive rule \"legal\""),
            "{found:#?}"
        );
        assert!(has("kb/b.md:5: warning: the body is empty"), "{found:#?}");
        assert!(has("is also the title of a.md"), "{found:#?}");
        assert!(
            has("kb/a.md:5: warning: link to \"missing.md\" points to no article"),
            "{found:#?}"
        );
        assert!(!has("\"b.md\" points"), "{found:#?}");
    }
}
