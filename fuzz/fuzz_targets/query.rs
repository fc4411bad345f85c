//! Any bytes as a query against the sample snapshot: lex, parse, bind, plan and run within a
//! byte cap and a deadline. Errors are fine; a panic or a hang is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    refract_query::sample::fuzz_query(data);
});
