//! relay: takes security events over local HTTP and delivers them, signed
//! and retried, to webhooks, chat tools and SIEMs. See ARCHITECTURE.md.

pub mod api;
pub mod check;
pub mod client;
pub mod config;
pub mod console;
pub mod deliver;
pub mod digester;
pub mod dispatch;
pub mod event;
pub mod format;
pub mod history;
pub mod incident;
pub mod ingest;
pub mod metrics;
pub mod payload;
pub mod plugin;
pub mod prepare;
pub mod reload;
pub mod render;
pub mod route;
pub mod scaffold;
pub mod server;
pub mod sign;
pub mod source;
pub mod store;
pub mod template;
pub mod webhook;
