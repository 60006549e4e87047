//! Knowledge-base articles (front matter and markdown): `frontdesk::fuzzing::front_matter`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| frontdesk::fuzzing::front_matter(data));
