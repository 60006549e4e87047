//! Visitor and agent websocket frames: `frontdesk::fuzzing::frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| frontdesk::fuzzing::frame(data));
