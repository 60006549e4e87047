//! What the fuzz targets run (`fuzz/fuzz_targets/`), shared with the test that
//! replays their corpora and every input that once crashed
//! (`tests/fuzz_corpus.rs`), so the stable toolchain checks the same code.
//!
//! Each function takes arbitrary bytes, feeds them to one of the parsers that
//! read untrusted or hand-edited input, and asserts what must hold of the
//! result. A panic in any of them is a bug; docs/security.md ("Fuzzing") says
//! how to run them.

use std::path::Path;

use crate::config::{EngineConfig, Limits};
use crate::content::{Content, ContentError};
use crate::engine::{self, Context, Kind, PendingSlot};
use crate::intents::Intents;
use crate::kb::{truncate_at_boundary, Article};
use crate::protocol::{self, agent, codes, ClientFrame, FrameError};
use crate::text;

/// Every error code a frame decoder may give.
const DECODE_CODES: &[&str] = &[
    codes::BAD_JSON,
    codes::UNKNOWN_TYPE,
    codes::INVALID_FRAME,
    codes::EMPTY_MESSAGE,
    codes::MESSAGE_TOO_LONG,
    codes::UNSUPPORTED_VERSION,
    codes::INVALID_RATING,
    codes::INVALID_EMAIL,
];

/// Fixed texts matched against fuzzed intents: a bit of everything the demo
/// content reacts to.
const SAMPLE_TEXTS: &[&str] = &[
    "hello",
    "where is my order FD-123456?",
    "I want to talk to a person",
    "my card is 4111 1111 1111 1111",
    "Grüß Gott, wo ist mein Paket?",
    "",
];

/// `frame`: a websocket text frame (or a binary one that is UTF-8, which the
/// server reads the same way) through the visitor and agent decoders, with
/// the default size limit and a tiny one.
pub fn frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    one_pass_agrees(text);
    let default_max = Limits::default().max_message_bytes;
    for max in [default_max, 8] {
        match protocol::decode(text, max) {
            Ok(frame) => check_visitor_frame(&frame, max),
            Err(e) => check_error(&e),
        }
        match agent::decode(text, max) {
            Ok(frame) => check_agent_frame(&frame, max),
            Err(e) => check_error(&e),
        }
    }
}

/// Whether the one-pass decoder for messages took `text`; when it did,
/// asserts that the general decoder reads it the same way.
pub fn one_pass_agrees(text: &str) -> bool {
    let Some(fast) = protocol::decode_message(text) else {
        return false;
    };
    assert_eq!(
        protocol::decode_typed::<ClientFrame>(text, &["message"]).ok(),
        Some(fast),
        "the one-pass decoder disagrees on {text:?}"
    );
    true
}

fn check_error(e: &FrameError) {
    assert!(DECODE_CODES.contains(&e.code), "unexpected code {}", e.code);
    assert!(!e.message.is_empty());
    // The server sends it back as an error frame.
    assert!(e.frame().to_json().contains(e.code));
}

fn check_message(id: &str, text: &str, max: usize) {
    assert!(
        !id.is_empty() && id.len() <= 128,
        "id of {} bytes",
        id.len()
    );
    assert!(!text.trim().is_empty(), "empty text accepted");
    assert!(
        text.len() <= max,
        "{} bytes accepted with a limit of {max}",
        text.len()
    );
}

fn check_visitor_frame(frame: &ClientFrame, max: usize) {
    match frame {
        ClientFrame::Message { id, text } | ClientFrame::Choice { id, value: text } => {
            check_message(id, text, max)
        }
        ClientFrame::LeaveMessage { id, email, text } => {
            check_message(id, text, max);
            assert!(protocol::valid_email(email.trim()));
        }
        ClientFrame::Rating { score } => assert!((1..=5).contains(score)),
        ClientFrame::Hello { v, .. } => assert_eq!(*v, protocol::VERSION),
        _ => {}
    }
}

fn check_agent_frame(frame: &agent::AgentFrame, max: usize) {
    use agent::AgentFrame;
    match frame {
        AgentFrame::Message { id, text, .. }
        | AgentFrame::Note { id, text, .. }
        | AgentFrame::AnswerTicket { id, text, .. } => check_message(id, text, max),
        AgentFrame::Close { note: Some(n), .. } => assert!(n.len() <= max),
        AgentFrame::Auth { token } => assert!(token.len() <= 256),
        _ => {}
    }
}

/// `intents`: text as `intents.toml`, parsed and compiled; when it compiles,
/// its intents and sensitive rules are run on their own examples and on a few
/// fixed texts.
pub fn intents(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("intents.toml");
    let intents = match Intents::compile(source, path) {
        Ok(intents) => intents,
        Err(e) => return check_content_error(&e, source),
    };
    let examples = intents.intents.iter().flat_map(|i| i.examples.iter());
    for sample in SAMPLE_TEXTS
        .iter()
        .copied()
        .chain(examples.map(String::as_str))
    {
        let scan = intents.sensitive.scan(sample);
        assert!(scan
            .rules
            .iter()
            .all(|&r| r < intents.sensitive.rules.len()));
        let clean = intents.synonyms.apply(&text::tidy(&scan.redacted));
        for m in intents.find(&clean) {
            let intent = &intents.intents[m.intent];
            let _ = crate::intents::fill(&intent.response, &m.captures);
            for slot in &intent.slots {
                let _ = slot.find(&clean);
            }
        }
    }
}

fn check_content_error(e: &ContentError, source: &str) {
    if let Some(line) = e.line {
        let lines = source.split('\n').count();
        assert!(
            (1..=lines + 1).contains(&line),
            "error on line {line} of a {lines}-line file: {e}"
        );
    }
    assert!(!e.to_string().is_empty());
}

/// `front_matter`: text as a knowledge-base article (YAML front matter and a
/// markdown body), then cut into excerpts as answers are.
pub fn front_matter(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let article = match Article::parse("fuzz/article.md".into(), source, Path::new("article.md")) {
        Ok(a) => a,
        Err(e) => return check_content_error(&e, source),
    };
    assert!(!article.title.is_empty() && article.title == article.title.trim());
    assert!(article.body_line >= 3, "body on line {}", article.body_line);
    for p in &article.paragraphs {
        assert!(!p.is_empty());
        for max in [0, 1, 40, 360] {
            let cut = truncate_at_boundary(p, max);
            // At most `max` characters, plus the ellipsis that marks a cut.
            assert!(
                cut.chars().count() <= max + 1,
                "{cut:?} is longer than {max}"
            );
        }
    }
    for i in 0..=article.questions.len() + 1 {
        let _ = article.phrase(i);
    }
}

/// The demo content of a checkout (`intents.toml` and `knowledge_base/`
/// under `root`), which the `engine` target decides with.
pub fn demo_content(root: &Path) -> Content {
    Content::load(&root.join("intents.toml"), &root.join("knowledge_base"))
        .unwrap_or_else(|e| panic!("demo content does not load: {e}"))
}

/// `engine`: text as a visitor's message, through the text normalisation and
/// the engine's decision (fresh, with a slot pending and one fallback behind),
/// made and remembered, and as the value of a quick reply.
pub fn engine(content: &Content, data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // Longer messages are refused before they reach the engine.
    if input.len() > Limits::default().max_message_bytes {
        return;
    }
    check_normalisation(content, input);

    let cfg = EngineConfig::default();
    let pending = content.intents.intents.iter().find_map(|i| {
        i.slots.first().map(|s| PendingSlot {
            intent: i.id.clone(),
            slot: s.name.clone(),
        })
    });
    let contexts = [
        Context::default(),
        Context {
            fallbacks_in_a_row: 1,
            pending_slot: pending,
        },
    ];
    for ctx in &contexts {
        let d = engine::decide(content, ctx, input, &cfg);
        assert_eq!(d.kind == Kind::Escalate, d.escalation.is_some(), "{d:?}");
        if d.kind == Kind::Clarify && d.source.is_none() {
            assert!(d.quick_replies.len() <= cfg.max_choices, "{d:?}");
        }
        assert!(!d.text.is_empty(), "empty reply: {d:?}");
        assert!((0.0..=1.0).contains(&d.score), "score {}", d.score);
        // Remembered or not, the decision is the one just made; one with
        // sensitive content is never given from memory.
        for _ in 0..3 {
            let (again, remembered) = engine::decide_remembered(content, ctx, input, &cfg);
            assert_eq!(*again.decision, d, "{input:?}");
            assert!(!remembered || d.explanation.sensitive.is_empty(), "{d:?}");
        }
        for value in [
            input.to_string(),
            format!("{}{input}", engine::CHOICE_ARTICLE),
            format!("{}{input}", engine::CHOICE_INTENT),
        ] {
            let d = engine::choose(content, ctx, &value, &cfg);
            assert_eq!(d.kind == Kind::Escalate, d.escalation.is_some(), "{d:?}");
        }
    }
}

fn check_normalisation(content: &Content, input: &str) {
    let tidy = text::tidy(input);
    assert!(!tidy.starts_with(' ') && !tidy.ends_with(' ') && !tidy.contains("  "));
    assert_eq!(text::tidy(&tidy), tidy, "tidy is not idempotent");
    let normal = text::normalize(input);
    assert!(!normal.starts_with(' ') && !normal.ends_with(' ') && !normal.contains("  "));
    let synonyms = content.intents.synonyms.apply(&tidy);
    let mut analyzer = text::analyzer();
    for term in text::terms(&mut analyzer, &synonyms) {
        assert!(!term.is_empty());
    }
    let _ = text::markdown_to_plain(input);
    let _ = text::is_whole_word(&tidy, 0, tidy.len());
}
