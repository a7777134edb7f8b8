//! The `relay` command line. Errors become one sentence on stderr and an
//! exit code: 0 ok, 1 user error, 2 internal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "Deliver security events to webhooks, chat tools and SIEMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        #[arg(long, default_value = "relay.yaml", env = "RELAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate the configuration; errors as file:line:col.
    Check {
        #[arg(long, default_value = "relay.yaml", env = "RELAY_CONFIG")]
        config: PathBuf,
    },
    /// Post an event to a running relay.
    Send {
        #[arg(long = "type")]
        event_type: String,
        /// JSON object for `data`, or @file to read it from a file.
        #[arg(long)]
        data: Option<String>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, env = "RELAY_INGEST_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Run a formatter (and destination build step) offline and print the
    /// body exactly as the relay would send it; or, with --source, print the
    /// events a source plugin makes of a body.
    Render {
        #[command(flatten)]
        request: relay::render::RenderRequest,
        /// Also print method, URL and headers.
        #[arg(long)]
        verbose: bool,
    },
    /// Plugin authoring.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate (with a copy of the SDK) that passes its own
    /// tests and builds for wasm32-wasip2.
    New {
        name: String,
        #[arg(long, value_enum, default_value_t = relay::scaffold::ScaffoldKind::Formatter)]
        kind: relay::scaffold::ScaffoldKind,
        /// Use the relay SDK at this path (default: write the SDK built into
        /// this relay beside the crate, in <crate>/relay-sdk).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// Parent directory of the new crate.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

/// A failure with the exit code it deserves.
struct Failure {
    code: u8,
    message: String,
}

fn user(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

fn internal(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: message.to_string(),
    }
}

fn main() -> ExitCode {
    return_freed_memory_promptly();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RELAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("relay: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The multi-threaded runtime, at tokio's defaults (a worker per CPU).
///
/// Measured and not taken (issue 21, stop 35): the workers at a lower
/// priority than the store's writer and flushers (`setpriority` to nice 3
/// or 8 on each worker), so that the one writer is preempted less on a busy
/// machine. Three alternating `E2E_ONLY=json_signed,fanout_10` runs each:
/// relay CPU over the load generator's, json_signed 3.29–3.37 at nice 0,
/// 3.32–3.53 at 3, 3.52–3.84 at 8; fanout_10 3.36–3.80, 3.43–3.75,
/// 3.73–4.04.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| internal(format!("cannot start the runtime: {e}")))
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config } => {
            runtime()?
                .block_on(relay::server::serve(&config))
                .map_err(|e| match e {
                    relay::server::ServeError::Store(_) => internal(e),
                    _ => user(e),
                })
        }
        Command::Check { config } => {
            let cfg = relay::check::load(&config).map_err(user)?;
            runtime()?
                .block_on(relay::store::check_reachable(&cfg.storage))
                .map_err(|e| user(format!("{}: {e}", config.display())))?;
            println!(
                "{}: ok ({} webhooks, {} tokens)",
                config.display(),
                cfg.webhooks.len(),
                cfg.auth.tokens.len()
            );
            Ok(())
        }
        Command::Send {
            event_type,
            data,
            url,
            token,
        } => {
            let data = match data.as_deref() {
                None => serde_json::json!({}),
                Some(d) => {
                    let text = match d.strip_prefix('@') {
                        Some(path) => std::fs::read_to_string(path)
                            .map_err(|e| user(format!("--data {d}: {e}")))?,
                        None => d.to_owned(),
                    };
                    serde_json::from_str(&text)
                        .map_err(|e| user(format!("--data is not valid JSON: {e}")))?
                }
            };
            let body = serde_json::json!({"type": event_type, "data": data});
            let (status, text) = runtime()?
                .block_on(relay::client::post_json(
                    &format!("{}/api/v1/events", url.trim_end_matches('/')),
                    &token,
                    &body,
                ))
                .map_err(user)?;
            println!("{text}");
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(user(format!("the relay answered HTTP {status}")))
            }
        }
        Command::Render { request, verbose } => {
            let text = if request.source.is_some() {
                relay::render::render_source(&request).map_err(user)?
            } else {
                let out = relay::render::render(&request).map_err(user)?;
                if verbose { out.verbose() } else { out.bodies() }
            };
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&text)
                .and_then(|()| stdout.flush())
                .map_err(|e| internal(format!("cannot write to stdout: {e}")))
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    kind,
                    sdk,
                    dir,
                },
        } => {
            let path =
                relay::scaffold::new_plugin(&dir, &name, kind, sdk.as_deref()).map_err(user)?;
            println!(
                "created {}\n  cd {} && cargo test && cargo build --target wasm32-wasip2 --release",
                path.display(),
                path.display()
            );
            Ok(())
        }
        Command::Version => {
            println!("relay {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// mimalloc: the relay allocates many small, short-lived buffers per event
/// on several threads; with glibc's malloc the e2e bench's json_signed ran
/// ~20 % slower (allocation was ~12 % of the relay's CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults keep freed memory committed: with bursts of large
/// ingest batches the relay's RSS tripled (the e2e bench's 100k backlog:
/// 340 MiB vs 131 with glibc). Two settings bring it back (~120 MiB):
/// arenas committed only as used (`MI_DEFAULT_ARENA_EAGER_COMMIT=0`, a
/// compile-time define set in `.cargo/config.toml`, since mimalloc reads it
/// before `main`), and freed pages purged at once (here; mimalloc v3's
/// `mi_option_purge_delay`, which the sys crate does not name). A delay
/// saves some CPU for memory: 250 ms was −5..−12 % relay CPU per event
/// for a backlog peak of 137–143 MiB (stop 30); 10 ms, +13..+15 MiB
/// (110–120 against 96–108) for CPU within the bench's noise (stop 33:
/// relay CPU over the load generator's 3.15–3.27 against 3.26–3.56).
fn return_freed_memory_promptly() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set stores an integer in mimalloc's option table;
    // 15 is `mi_option_purge_delay` in the v3 mimalloc.h that
    // libmimalloc-sys =0.1.49 builds.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}
