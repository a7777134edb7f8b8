//! Test fixture: version "a" of the echo formatter.
const VERSION: &str = "a";
include!("../../echo_common.rs");
