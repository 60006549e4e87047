//! Storing turns: the visitor's message, the bot's reply, its decision and the
//! conversation's new context, for 1,000 conversations at once, committed in
//! groups of 1, 16, 128 and 512 turns (as many as arrive together).
//!
//! Run: `cargo bench --bench store`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use frontdesk::config::{StoreConfig, Synchronous};
use frontdesk::engine::Kind;
use frontdesk::store::{time_ordered_id, BotReply, Store, Turn};

/// The server's allocator (`src/main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONVERSATIONS: usize = 1000;

/// A decision's explanation of the usual size (about 1 KiB of JSON),
/// packed as the store keeps it.
fn explanation() -> Vec<u8> {
    let articles = [
        ("shipping/delivery-times.md", "How long does delivery take?"),
        ("shipping/international-shipping.md", "do you ship internationally"),
        ("orders/track-my-order.md", "where is my parcel"),
        ("returns/return-shipping-cost.md", "do I have to pay for return shipping"),
        ("shipping/express-and-next-day.md", "is there express shipping"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (id, phrase))| {
        format!(
            r#"{{"id":"{id}","confidence":0.{:03},"best_phrase":"{phrase}","best_phrase_score":0.{:03},"centroid_score":0.{:03},"bm25":{}.{:03}}}"#,
            878 - i * 131,
            1000 - i * 97,
            756 - i * 113,
            12 - i * 2,
            223 + i * 71
        )
    })
    .collect::<Vec<_>>();
    frontdesk::store::packed::pack(&format!(
        r#"{{"rule":"article \"shipping/delivery-times.md\": confidence 0.878 >= answer threshold 0.80, lead 0.747 >= margin 0.15","articles":[{}],"terms":["how","long","deliveri","take"],"answer_threshold":0.8,"clarify_threshold":0.4,"clarify_margin":0.15,"fallbacks_in_a_row":0}}"#,
        articles.join(",")
    ))
}

fn turn(conversation_id: &str, n: u64, explanation: &[u8]) -> Turn {
    Turn {
        conversation_id: conversation_id.to_string(),
        visitor: Some((format!("m{n}"), "how long does delivery take".into())),
        reply: Some(BotReply {
            answer_id: time_ordered_id("a_"),
            kind: Kind::Answer,
            text: "Orders within the EU arrive in 2-4 working days; elsewhere 5-10.".into(),
            source: None,
            source_json: None,
            quick_replies_json: "[]".into(),
            score: 0.878,
            escalation: None,
            explanation: explanation.into(),
            smalltalk: false,
        }),
        state: None,
        context: None,
    }
}

fn bench_turns(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for sync in [Synchronous::Normal, Synchronous::Full] {
        let name = match sync {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            synchronous: sync,
            ..StoreConfig::default()
        };
        let (store, guard) = Store::open(dir.path(), &cfg).unwrap();
        let ids: Vec<String> = (0..CONVERSATIONS).map(|_| time_ordered_id("c_")).collect();
        rt.block_on(async {
            for id in &ids {
                store
                    .create_conversation(id.clone(), "hash".into())
                    .await
                    .unwrap();
            }
        });
        let expl = explanation();
        let mut n = 0u64;
        let mut group = c.benchmark_group(format!("store/turn/{name}"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(4));
        for batch in [1usize, 16, 128, 512] {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("group-of-{batch}"), |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    rt.block_on(async {
                        for _ in 0..iters {
                            let mut pending = Vec::with_capacity(batch);
                            for _ in 0..batch {
                                n += 1;
                                let conv = &ids[(n as usize * 7919) % CONVERSATIONS];
                                let store = store.clone();
                                let t = turn(conv, n, &expl);
                                pending
                                    .push(tokio::spawn(async move { store.store_turn(t).await }));
                            }
                            for p in pending {
                                p.await.unwrap().unwrap();
                            }
                        }
                    });
                    started.elapsed()
                })
            });
        }
        group.finish();
        drop(store);
        guard.join();
    }
}

criterion_group!(benches, bench_turns);
criterion_main!(benches);
