//! One decision, measured on the demo content and on generated content of
//! 1,000 intents and 10,000 articles; indexing those 10,000 articles; and
//! decoding a visitor's message frame.
//!
//! Run: `cargo bench --bench engine`

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

use frontdesk::config::EngineConfig;
use frontdesk::content::Content;
use frontdesk::engine::{decide, decide_remembered, Context};
use frontdesk::intents::Intents;
use frontdesk::kb::{Article, KnowledgeBase};

/// The server's allocator (`src/main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A deterministic word generator (xorshift), so every run measures the same content.
struct Words {
    state: u64,
    vocab: Vec<String>,
}

impl Words {
    fn new(size: usize) -> Words {
        let mut w = Words {
            state: 0x9E37_79B9_7F4A_7C15,
            vocab: Vec::new(),
        };
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ren", "sto", "var", "pel", "dun", "qui", "tor", "ban", "sel", "fim",
            "gor", "hal", "jus", "nek", "pra", "wil", "zen",
        ];
        for _ in 0..size {
            let n = 2 + w.next() % 2;
            let word: String = (0..n)
                .map(|_| SYLLABLES[w.next() % SYLLABLES.len()])
                .collect();
            w.vocab.push(word);
        }
        w
    }

    fn next(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state as usize
    }

    /// Words drawn with a skew towards the common ones, as in real text.
    fn sentence(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                let a = self.next() % self.vocab.len();
                let b = self.next() % self.vocab.len();
                self.vocab[a.min(b)].clone()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn generated(intents: usize, articles: usize) -> Content {
    let mut w = Words::new(20_000);
    let mut toml = String::new();
    // Intent phrases are marked with an "x" so that article questions never
    // match them and both paths of the decision can be measured.
    for i in 0..intents {
        let a = w.sentence(2).replace(' ', " x");
        let b = w.sentence(1);
        let k = w.sentence(2).replace(' ', " x");
        writeln!(
            toml,
            "[[intent]]\nid = \"intent_{i}\"\npatterns = ['\\bx{a}\\b', '^x{b} (?:now|today)\\b']\nkeywords = [\"x{k}\"]\nresponse = \"Answer {i}\"\n"
        )
        .unwrap();
    }
    let intents = Intents::compile(&toml, Path::new("generated.toml")).unwrap();
    let articles = generate_articles(&mut w, articles);
    let kb = KnowledgeBase::build(Path::new("generated"), articles, &intents.synonyms).unwrap();
    Content::new(intents, kb)
}

fn generate_articles(w: &mut Words, n: usize) -> Vec<Article> {
    (0..n)
        .map(|i| {
            let mut text = format!("---\ntitle: \"{}\"\nquestions:\n", w.sentence(5));
            for _ in 0..8 {
                let len = 4 + w.next() % 6;
                writeln!(text, "  - \"{}\"", w.sentence(len)).unwrap();
            }
            text.push_str("---\n");
            for _ in 0..3 {
                writeln!(text, "{}.\n", w.sentence(40)).unwrap();
            }
            Article::parse(format!("a{i}.md"), &text, Path::new("a.md")).unwrap()
        })
        .collect()
}

fn demo_content() -> Content {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Content::load(&root.join("intents.toml"), &root.join("knowledge_base")).unwrap()
}

const DEMO_QUESTIONS: &[&str] = &[
    "how long does delivery take to germany",
    "where is my order FD-123456",
    "can i return shoes i wore once",
    "my card was declined at checkout",
    "what is the capital of peru",
];

fn bench_demo(c: &mut Criterion) {
    let cfg = EngineConfig::default();
    let ctx = Context::default();
    let demo = demo_content();
    let mut i = 0;
    c.bench_function("decide/demo", |b| {
        b.iter(|| {
            i = (i + 1) % DEMO_QUESTIONS.len();
            black_box(decide(&demo, &ctx, black_box(DEMO_QUESTIONS[i]), &cfg))
        })
    });
    // The same questions again and again: after the first round, each is the
    // decision remembered, looked up and shared rather than made.
    c.bench_function("decide/demo/remembered", |b| {
        b.iter(|| {
            i = (i + 1) % DEMO_QUESTIONS.len();
            black_box(decide_remembered(
                &demo,
                &ctx,
                black_box(DEMO_QUESTIONS[i]),
                &cfg,
            ))
        })
    });
}

fn bench_large(c: &mut Criterion) {
    let cfg = EngineConfig::default();
    let ctx = Context::default();
    let large = generated(1_000, 10_000);
    let mut w = Words::new(20_000);
    // Questions in the articles' words: every intent pattern is considered and
    // none matches, so the knowledge base decides.
    let questions: Vec<String> = (0..64).map(|_| w.sentence(7)).collect();
    let mut j = 0;
    c.bench_function("decide/1000-intents-10000-articles/kb", |b| {
        b.iter(|| {
            j = (j + 1) % questions.len();
            black_box(decide(&large, &ctx, black_box(&questions[j]), &cfg))
        })
    });
    // Questions that an intent answers.
    let intent_questions: Vec<String> = (0..64)
        .map(|_| format!("hello x{} please", w.sentence(2).replace(' ', " x")))
        .collect();
    let answered = intent_questions
        .iter()
        .filter(|q| {
            decide(&large, &ctx, q, &cfg)
                .source
                .is_some_and(|s| s.id.starts_with("intent_"))
        })
        .count();
    assert!(answered > 0, "some generated questions reach an intent");
    c.bench_function("decide/1000-intents-10000-articles/intent", |b| {
        b.iter(|| {
            j = (j + 1) % intent_questions.len();
            black_box(decide(&large, &ctx, black_box(&intent_questions[j]), &cfg))
        })
    });
}

fn bench_index(c: &mut Criterion) {
    let articles = generate_articles(&mut Words::new(20_000), 10_000);
    let synonyms = Intents::empty().synonyms;
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.bench_function("10000-articles", |b| {
        b.iter(|| {
            black_box(KnowledgeBase::build(Path::new("g"), articles.clone(), &synonyms).unwrap())
        })
    });
    group.finish();
}

/// Decoding a visitor's message frame, the first step of every message.
fn bench_decode(c: &mut Criterion) {
    let frame = r#"{"type":"message","id":"m-0193a7c2-17","text":"how long does delivery take to germany"}"#;
    c.bench_function("protocol/decode/message", |b| {
        b.iter(|| black_box(frontdesk::protocol::decode(black_box(frame), 16 * 1024)))
    });
}

criterion_group!(benches, bench_demo, bench_large, bench_index, bench_decode);
criterion_main!(benches);
