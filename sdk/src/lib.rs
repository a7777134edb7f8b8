//! Write relay plugins in Rust.
//!
//! A relay plugin is a WebAssembly component implementing one world of the
//! `relay:plugin@0.1.0` WIT package (`sdk/wit/relay-plugin.wit`):
//!
//! - a **formatter** turns an [`Event`] into a [`Payload`];
//! - a **destination** turns a [`Payload`] into the [`Request`]s to send and
//!   classifies each [`Response`] into an [`Outcome`];
//! - a **source** turns the body a tool posted to the relay's
//!   `POST /api/v1/sources/{name}` into [`SourceEvent`]s.
//!
//! A plugin is one type implementing [`Formatter`], [`Destination`] or
//! [`Source`], plus one macro call:
//!
//! ```
//! use relay_sdk::{Event, Formatter, Payload};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize, Default)]
//! #[serde(deny_unknown_fields, default)]
//! struct Options {
//!     prefix: String,
//! }
//!
//! struct Shout(Options);
//!
//! impl Formatter for Shout {
//!     fn create(options: &str) -> Result<Self, String> {
//!         relay_sdk::parse_options(options).map(Shout)
//!     }
//!     fn format(&self, event: &Event) -> Result<Payload, String> {
//!         let title = event.str("title").unwrap_or(&event.event_type);
//!         Ok(Payload::text(format!("{}{}", self.0.prefix, title.to_uppercase())))
//!     }
//! }
//!
//! relay_sdk::export_formatter!(Shout);
//! # fn main() {
//! # let p = relay_sdk::testing::format::<Shout>(r#"{"prefix":"! "}"#,
//! #     &relay_sdk::testing::event(serde_json::json!({"title": "hi"}))).unwrap();
//! # assert_eq!(p.body, b"! HI");
//! # }
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release` and drop the
//! `.wasm` into the relay's plugins directory. On every other target the
//! export macros only check that the type implements the trait, so plain
//! `cargo test` exercises the plugin natively (see [`testing`]).

pub mod card;
mod data;
mod event;
mod options;
mod source;
pub mod testing;
pub mod text;
pub mod ticket;
pub mod time;
mod types;

pub use data::{Data, MemberRef};
pub use event::{Event, scalar_text};
pub use options::parse_options;
pub use source::{Source, SourceEvent, header};
pub use types::{Context, Outcome, Payload, Request, Response, StateChange, Target, Verdict};

/// A formatter plugin: turns an event into a payload.
///
/// The host calls [`Formatter::create`] once per webhook with that webhook's
/// options (JSON text) and then [`Formatter::format`] for every event.
pub trait Formatter {
    /// Parses the options once. An error refuses the plugin for that webhook;
    /// name the bad field or value in it (see [`parse_options`]).
    fn create(options: &str) -> Result<Self, String>
    where
        Self: Sized;

    /// Formats one event. An error fails that delivery.
    fn format(&self, event: &Event) -> Result<Payload, String>;
}

/// A destination plugin: turns a payload into requests and classifies the
/// responses.
pub trait Destination {
    /// Parses the options once. An error refuses the plugin for that webhook.
    fn create(options: &str) -> Result<Self, String>
    where
        Self: Sized;

    /// Builds the request(s) to send for one payload. The core sends them in
    /// order and classifies each response with [`Destination::classify`].
    fn build(&self, payload: &Payload, target: &Target) -> Result<Vec<Request>, String>;

    /// Decides what a response means: success, retry, fail or disable.
    fn classify(&self, response: &Response) -> Outcome;
}

/// A destination that remembers something between events of one incident
/// (the `stateful-destination` world): the ticket a create returned, to
/// close the same ticket when the incident resolves.
///
/// The host keeps one state string per (webhook, incident key) and hands it
/// to [`StatefulDestination::build`] in the [`Context`];
/// [`StatefulDestination::classify`] returns a [`Verdict`] that may set or
/// clear it. The plugin stays pure: the host stores the state.
pub trait StatefulDestination {
    /// Parses the options once. An error refuses the plugin for that webhook.
    fn create(options: &str) -> Result<Self, String>
    where
        Self: Sized;

    /// Builds the request(s) to send for one payload, knowing the incident's
    /// key and stored state.
    fn build(
        &self,
        payload: &Payload,
        target: &Target,
        context: &Context,
    ) -> Result<Vec<Request>, String>;

    /// Decides what a response means and what becomes of the state.
    /// `context.state` includes the changes made by earlier responses of the
    /// same attempt.
    fn classify(&self, response: &Response, context: &Context) -> Verdict;
}

/// Exports a [`Formatter`] type as the component's `relay:plugin/format`
/// interface.
///
/// Use it once per crate, at the top level. On wasm it emits the component
/// exports; on any other target it only asserts that the type implements
/// [`Formatter`], so native `cargo test` is unaffected.
#[macro_export]
macro_rules! export_formatter {
    ($ty:ty) => {
        const _: () = {
            fn __relay_assert_formatter<T: $crate::Formatter + 'static>() {}
            let _ = __relay_assert_formatter::<$ty>;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __RelayFormatterExport;
            impl $crate::__private::formatter::exports::relay::plugin::format::Guest
                for __RelayFormatterExport
            {
                type Formatter = $crate::__private::FormatterResource<$ty>;
            }
            $crate::__private::formatter::export!(
                __RelayFormatterExport with_types_in $crate::__private::formatter
            );
        };
    };
}

/// Exports a [`Destination`] type as the component's `relay:plugin/deliver`
/// interface.
///
/// Use it once per crate, at the top level. On wasm it emits the component
/// exports; on any other target it only asserts that the type implements
/// [`Destination`].
#[macro_export]
macro_rules! export_destination {
    ($ty:ty) => {
        const _: () = {
            fn __relay_assert_destination<T: $crate::Destination + 'static>() {}
            let _ = __relay_assert_destination::<$ty>;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __RelayDestinationExport;
            impl $crate::__private::destination::exports::relay::plugin::deliver::Guest
                for __RelayDestinationExport
            {
                type Destination = $crate::__private::DestinationResource<$ty>;
            }
            $crate::__private::destination::export!(
                __RelayDestinationExport with_types_in $crate::__private::destination
            );
        };
    };
}

/// Exports a [`Source`] type as the component's `relay:plugin/ingest`
/// interface.
///
/// Use it once per crate, at the top level. On wasm it emits the component
/// exports; on any other target it only asserts that the type implements
/// [`Source`].
#[macro_export]
macro_rules! export_source {
    ($ty:ty) => {
        const _: () = {
            fn __relay_assert_source<T: $crate::Source + 'static>() {}
            let _ = __relay_assert_source::<$ty>;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __RelaySourceExport;
            impl $crate::__private::source::exports::relay::plugin::ingest::Guest
                for __RelaySourceExport
            {
                type Source = $crate::__private::SourceResource<$ty>;
            }
            $crate::__private::source::export!(
                __RelaySourceExport with_types_in $crate::__private::source
            );
        };
    };
}

/// Exports a [`StatefulDestination`] type as the component's
/// `relay:plugin/deliver-stateful` interface (world `stateful-destination`).
///
/// Use it once per crate, at the top level. On any other target than wasm it
/// only asserts that the type implements [`StatefulDestination`].
#[macro_export]
macro_rules! export_stateful_destination {
    ($ty:ty) => {
        const _: () = {
            fn __relay_assert_stateful<T: $crate::StatefulDestination + 'static>() {}
            let _ = __relay_assert_stateful::<$ty>;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __RelayStatefulExport;
            impl $crate::__private::stateful::exports::relay::plugin::deliver_stateful::Guest
                for __RelayStatefulExport
            {
                type Destination = $crate::__private::StatefulResource<$ty>;
            }
            $crate::__private::stateful::export!(
                __RelayStatefulExport with_types_in $crate::__private::stateful
            );
        };
    };
}

/// Generated bindings and the glue between them and the SDK traits. Not part
/// of the public API: use [`export_formatter!`] / [`export_destination!`] /
/// [`export_source!`].
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    use crate::{
        Context, Destination, Event, Formatter, Outcome, Payload, Request, Response, Source,
        StateChange, StatefulDestination, Target,
    };

    /// Bindings for `world formatter`.
    #[allow(missing_docs, clippy::all)]
    pub mod formatter {
        wit_bindgen::generate!({
            path: "wit",
            world: "formatter",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "relay_sdk::__private::formatter",
        });
    }

    /// Bindings for `world destination`.
    #[allow(missing_docs, clippy::all)]
    pub mod destination {
        wit_bindgen::generate!({
            path: "wit",
            world: "destination",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "relay_sdk::__private::destination",
        });
    }

    /// Bindings for `world source`.
    #[allow(missing_docs, clippy::all)]
    pub mod source {
        wit_bindgen::generate!({
            path: "wit",
            world: "source",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "relay_sdk::__private::source",
        });
    }

    /// Bindings for `world stateful-destination`.
    #[allow(missing_docs, clippy::all)]
    pub mod stateful {
        wit_bindgen::generate!({
            path: "wit",
            world: "stateful-destination",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "relay_sdk::__private::stateful",
        });
    }

    use destination::exports::relay::plugin::deliver as wit_deliver;
    use destination::relay::plugin::types as dtypes;
    use formatter::exports::relay::plugin::format as wit_format;
    use formatter::relay::plugin::types as ftypes;
    use source::exports::relay::plugin::ingest as wit_ingest;

    /// The component resource wrapping a user's [`Formatter`].
    pub struct FormatterResource<T>(T);

    impl<T: Formatter + 'static> wit_format::GuestFormatter for FormatterResource<T> {
        fn create(options: String) -> Result<wit_format::Formatter, String> {
            T::create(&options).map(|inner| wit_format::Formatter::new(FormatterResource(inner)))
        }

        fn format(&self, event: ftypes::Event) -> Result<ftypes::Payload, String> {
            let event = Event::from_parts(event.id, event.event_type, event.time, event.data)?;
            let payload = self.0.format(&event)?;
            Ok(ftypes::Payload {
                content_type: payload.content_type,
                body: payload.body,
            })
        }
    }

    /// The component resource wrapping a user's [`Destination`].
    pub struct DestinationResource<T>(T);

    impl<T: Destination + 'static> wit_deliver::GuestDestination for DestinationResource<T> {
        fn create(options: String) -> Result<wit_deliver::Destination, String> {
            T::create(&options)
                .map(|inner| wit_deliver::Destination::new(DestinationResource(inner)))
        }

        fn build(
            &self,
            payload: dtypes::Payload,
            target: dtypes::Target,
        ) -> Result<Vec<dtypes::Request>, String> {
            let payload = Payload {
                content_type: payload.content_type,
                body: payload.body,
            };
            let target = Target {
                url: target.url,
                method: target.method,
                headers: target.headers,
            };
            let requests = self.0.build(&payload, &target)?;
            Ok(requests
                .into_iter()
                .map(|r: Request| dtypes::Request {
                    method: r.method,
                    url: r.url,
                    headers: r.headers,
                    body: r.body,
                })
                .collect())
        }

        fn classify(&self, response: dtypes::Response) -> dtypes::Outcome {
            let response = Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            };
            match self.0.classify(&response) {
                Outcome::Success => dtypes::Outcome::Success,
                Outcome::Retry(after_ms) => dtypes::Outcome::Retry(after_ms),
                Outcome::Fail(reason) => dtypes::Outcome::Fail(reason),
                Outcome::Disable(reason) => dtypes::Outcome::Disable(reason),
            }
        }
    }

    /// The component resource wrapping a user's [`Source`].
    pub struct SourceResource<T>(T);

    impl<T: Source + 'static> wit_ingest::GuestSource for SourceResource<T> {
        fn create(options: String) -> Result<wit_ingest::Source, String> {
            T::create(&options).map(|inner| wit_ingest::Source::new(SourceResource(inner)))
        }

        fn parse(
            &self,
            headers: Vec<(String, String)>,
            body: Vec<u8>,
        ) -> Result<Vec<wit_ingest::SourceEvent>, String> {
            let events = self.0.parse(&headers, &body)?;
            events
                .into_iter()
                .map(|e| {
                    Ok(wit_ingest::SourceEvent {
                        data: e.data_text()?,
                        id: e.id,
                        event_type: e.event_type,
                        time: e.time,
                    })
                })
                .collect()
        }
    }

    use stateful::exports::relay::plugin::deliver_stateful as wit_stateful;
    use stateful::relay::plugin::types as stypes;

    /// The component resource wrapping a user's [`StatefulDestination`].
    pub struct StatefulResource<T>(T);

    fn context_of(c: wit_stateful::Context) -> Context {
        Context {
            incident_key: c.incident_key,
            state: c.state,
        }
    }

    impl<T: StatefulDestination + 'static> wit_stateful::GuestDestination for StatefulResource<T> {
        fn create(options: String) -> Result<wit_stateful::Destination, String> {
            T::create(&options).map(|inner| wit_stateful::Destination::new(StatefulResource(inner)))
        }

        fn build(
            &self,
            payload: stypes::Payload,
            target: stypes::Target,
            context: wit_stateful::Context,
        ) -> Result<Vec<stypes::Request>, String> {
            let payload = Payload {
                content_type: payload.content_type,
                body: payload.body,
            };
            let target = Target {
                url: target.url,
                method: target.method,
                headers: target.headers,
            };
            let requests = self.0.build(&payload, &target, &context_of(context))?;
            Ok(requests
                .into_iter()
                .map(|r: Request| stypes::Request {
                    method: r.method,
                    url: r.url,
                    headers: r.headers,
                    body: r.body,
                })
                .collect())
        }

        fn classify(
            &self,
            response: stypes::Response,
            context: wit_stateful::Context,
        ) -> wit_stateful::Verdict {
            let response = Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            };
            let verdict = self.0.classify(&response, &context_of(context));
            wit_stateful::Verdict {
                outcome: match verdict.outcome {
                    Outcome::Success => stypes::Outcome::Success,
                    Outcome::Retry(after_ms) => stypes::Outcome::Retry(after_ms),
                    Outcome::Fail(reason) => stypes::Outcome::Fail(reason),
                    Outcome::Disable(reason) => stypes::Outcome::Disable(reason),
                },
                state: match verdict.state {
                    StateChange::Keep => wit_stateful::StateChange::Keep,
                    StateChange::Set(s) => wit_stateful::StateChange::Set(s),
                    StateChange::Clear => wit_stateful::StateChange::Clear,
                },
            }
        }
    }
}
