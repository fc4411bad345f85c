//! Integration tests of the local process driver (one test binary).
mod local;
mod processes;
