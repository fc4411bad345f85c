//! Any bytes as a sequence of pgoutput messages (u16 length + message) decoded in order.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    refract_sources::fuzzing::pgoutput_messages(data);
});
