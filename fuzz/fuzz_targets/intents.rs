//! `intents.toml` parsing and compiling: `frontdesk::fuzzing::intents`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| frontdesk::fuzzing::intents(data));
