//! `refract-bench`: dataset generator and benchmarks.
fn main() {}
