//! Test fixture: version "b" of the echo formatter.
const VERSION: &str = "b";
include!("../../echo_common.rs");
