//! `Payload`: a formatted body with its content type — what a formatter
//! (the core's `json` in `format`, or a plugin through `plugin`) makes and
//! a destination plugin builds its requests from. A leaf, so that `format`
//! and the plugin host share it without importing each other.
//!
//! Owns: the type alone.

use bytes::Bytes;

/// A formatted body.
#[derive(Debug, Clone)]
pub struct Payload {
    pub content_type: String,
    pub body: Bytes,
}
