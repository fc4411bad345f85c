//! Any bytes as a binlog value with its source column's fix and type.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    refract_sources::fuzzing::binlog_values(data);
});
