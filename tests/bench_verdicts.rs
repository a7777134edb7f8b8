//! The e2e bench's verdict rules (`benches/support/verdict.rs`): a bench
//! with `harness = false` runs no tests, so its tests run from here.

#[path = "../benches/support/verdict.rs"]
mod verdict;
