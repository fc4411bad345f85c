//! This crate provides the runtime drivers that run engine instances.
#![deny(missing_docs)]
