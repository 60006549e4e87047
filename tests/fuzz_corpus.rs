//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and every input that
//! once crashed a target (`fuzz/regressions/<target>/`) through the same
//! functions the fuzz targets run (`frontdesk::fuzzing`), on the stable
//! toolchain, so that what fuzzing found stays fixed. docs/security.md
//! ("Fuzzing") says how the corpora are grown.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use frontdesk::fuzzing;

const TARGETS: &[&str] = &["frame", "intents", "front_matter", "engine"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The corpus and regression inputs of one target.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs every input of `target`; a failure names the file that caused it.
fn replay(target: &str, run: impl Fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target}/ is empty");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| run(&data))) {
            eprintln!("fuzz input {} failed", file.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn frame() {
    replay("frame", fuzzing::frame);
}

#[test]
fn intents() {
    replay("intents", fuzzing::intents);
}

#[test]
fn front_matter() {
    replay("front_matter", fuzzing::front_matter);
}

#[test]
fn engine() {
    let content = fuzzing::demo_content(Path::new(env!("CARGO_MANIFEST_DIR")));
    replay("engine", |data| fuzzing::engine(&content, data));
}

/// Every corpus and regression directory belongs to a target replayed above.
#[test]
fn no_input_directory_is_left_out() {
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name();
            let name = name.to_string_lossy();
            assert!(
                TARGETS.contains(&name.as_ref()),
                "fuzz/{kind}/{name} is not replayed by tests/fuzz_corpus.rs"
            );
        }
    }
}
