//! One knowledge-base article: YAML front matter between `---` lines and a
//! markdown body. The file's path relative to the knowledge-base directory is
//! the article id.

use std::path::Path;

use serde::Deserialize;

use crate::content::ContentError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: String,
    #[serde(default)]
    tags: Vec<String>,
    url: Option<String>,
    #[serde(default)]
    questions: Vec<String>,
}

/// A parsed article.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    /// Path relative to the knowledge-base directory, with `/` separators.
    pub id: String,
    pub title: String,
    pub tags: Vec<String>,
    pub url: Option<String>,
    /// Phrasings visitors use for this article's question.
    pub questions: Vec<String>,
    /// The markdown body.
    pub body: String,
    /// Line in the file where the body starts.
    pub body_line: usize,
    /// The body's paragraphs as plain text, for excerpts.
    pub paragraphs: Vec<String>,
}

/// Id prefix of the phrasings that stand for an intent (its examples) in the
/// same scoring space as articles.
pub const INTENT_PREFIX: &str = "intent:";

impl Article {
    /// An intent's examples as a phrasing-only article, so a visitor's message
    /// close to an example reaches the intent even when no pattern matches.
    pub fn from_intent_examples(intent_id: &str, examples: &[String]) -> Option<Article> {
        let (first, rest) = examples.split_first()?;
        Some(Article {
            id: format!("{INTENT_PREFIX}{intent_id}"),
            title: first.clone(),
            tags: Vec::new(),
            url: None,
            questions: rest.to_vec(),
            body: String::new(),
            body_line: 0,
            paragraphs: Vec::new(),
        })
    }

    /// The intent this entry stands for, if it is an intent's examples.
    pub fn intent_id(&self) -> Option<&str> {
        self.id.strip_prefix(INTENT_PREFIX)
    }

    /// Phrasing `i` as [`super::Hit::best_phrase`] numbers them: 0 is the title.
    pub fn phrase(&self, i: usize) -> &str {
        match i {
            0 => &self.title,
            i => self.questions.get(i - 1).map_or("", String::as_str),
        }
    }

    /// Parses an article's text. `file` names it in errors.
    pub fn parse(id: String, text: &str, file: &Path) -> Result<Article, ContentError> {
        let err = |line: Option<usize>, msg: String| ContentError::new(file, line, msg);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.split_inclusive('\n');
        let first = lines.next().unwrap_or("");
        if first.trim_end() != "---" {
            return Err(err(
                Some(1),
                "an article starts with front matter: a line `---`, YAML (title, tags, url, questions), and `---`".into(),
            ));
        }
        let mut yaml = String::new();
        let mut closed = false;
        let mut consumed = first.len();
        let mut line_no = 1;
        for line in lines.by_ref() {
            consumed += line.len();
            line_no += 1;
            if line.trim_end() == "---" {
                closed = true;
                break;
            }
            yaml.push_str(line);
        }
        if !closed {
            return Err(err(
                Some(1),
                "front matter is not closed by a `---` line".into(),
            ));
        }
        let fm: FrontMatter = serde_norway::from_str(&yaml).map_err(|e| {
            // The YAML starts on the file's second line. The YAML parser also
            // counts a lone carriage return (and U+0085, U+2028, U+2029) as a
            // line break, so its own line number can point past the file's
            // end; the line is counted from the error's byte offset instead.
            let line = e
                .location()
                .map(|l| crate::content::line_at(&yaml, l.index()) + 1);
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            err(line, format!("front matter: {msg}"))
        })?;
        if fm.title.trim().is_empty() {
            return Err(err(Some(2), "front matter: title is empty".into()));
        }
        let body = text[consumed..].trim().to_string();
        let paragraphs = paragraphs(&body);
        Ok(Article {
            id,
            title: fm.title.trim().to_string(),
            tags: fm.tags,
            url: fm.url.filter(|u| !u.trim().is_empty()),
            questions: fm.questions,
            body,
            body_line: line_no + 1,
            paragraphs,
        })
    }
}

/// Splits markdown into blank-line separated blocks as plain text; a heading
/// joins the block that follows it.
fn paragraphs(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block = String::new();
    let mut pending_heading = String::new();
    let flush = |block: &mut String, heading: &mut String, out: &mut Vec<String>| {
        let plain = crate::text::markdown_to_plain(block);
        if !plain.is_empty() {
            let text = if heading.is_empty() {
                plain
            } else {
                format!("{}: {plain}", heading.trim_end_matches(':'))
            };
            out.push(text);
            heading.clear();
        }
        block.clear();
    };
    for line in body.lines() {
        let t = line.trim();
        if t.is_empty() {
            flush(&mut block, &mut pending_heading, &mut out);
        } else if t.starts_with('#') {
            flush(&mut block, &mut pending_heading, &mut out);
            pending_heading = crate::text::markdown_to_plain(t);
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    flush(&mut block, &mut pending_heading, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_front_matter_and_paragraphs() {
        let text = "---\ntitle: \"Returns\"\ntags: [returns]\nurl: https://x/r\nquestions:\n  - can i return it\n---\nYou have **30 days**.\n\n## Label\nPrint the [label](../l.md).\n";
        let a = Article::parse("returns.md".into(), text, Path::new("kb/returns.md")).unwrap();
        assert_eq!(a.title, "Returns");
        assert_eq!(a.questions, ["can i return it"]);
        assert_eq!(
            a.paragraphs,
            ["You have 30 days.", "Label: Print the label."]
        );
        assert_eq!(a.body_line, 8);
    }

    #[test]
    fn yaml_error_has_file_line() {
        let text = "---\ntitle: \"ok\"\nquestions: [unclosed\n---\nbody";
        let e = Article::parse("a.md".into(), text, Path::new("kb/a.md")).unwrap_err();
        assert!(e.line.is_some_and(|l| l >= 3), "{e}");
        assert!(e.to_string().starts_with("kb/a.md:"), "{e}");
    }

    #[test]
    fn stray_carriage_returns_do_not_move_error_lines() {
        let plain = "---\ntitle: \"ok\"\nquestions:\n  - one\n  - [two\n---\nbody";
        let with_cr = plain.replace("  - one", "  - one\r\r\r\r\r\r");
        let line = |text: &str| {
            Article::parse("a.md".into(), text, Path::new("a.md"))
                .unwrap_err()
                .line
        };
        assert_eq!(line(&with_cr), line(plain));
        assert!(
            line(plain).is_some_and(|l| (2..=7).contains(&l)),
            "{:?}",
            line(plain)
        );
    }

    #[test]
    fn unknown_front_matter_key_is_refused() {
        let text = "---\ntitle: x\nquestion: [a]\n---\nbody";
        let e = Article::parse("a.md".into(), text, Path::new("a.md")).unwrap_err();
        assert!(e.message.contains("question"), "{e}");
    }

    #[test]
    fn missing_front_matter_is_refused() {
        let e = Article::parse("a.md".into(), "# Hi\n", Path::new("a.md")).unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
