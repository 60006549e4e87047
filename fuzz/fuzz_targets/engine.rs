//! The engine's decision on the demo content, and text normalisation:
//! `frontdesk::fuzzing::engine`. The content is loaded once, from the
//! checkout this crate sits in.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use frontdesk::content::Content;
use libfuzzer_sys::fuzz_target;

static CONTENT: OnceLock<Content> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let content = CONTENT.get_or_init(|| {
        frontdesk::fuzzing::demo_content(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
    });
    frontdesk::fuzzing::engine(content, data);
});
