//! `cargo bench --bench e2e`: relay end to end, against the limit of this
//! machine measured in the same run (issue 7).
//!
//! Everything runs on loopback and every loop is bounded in count and time:
//!
//! - a **receiver** (hyper 1, HTTP/1, answers `200 ok` at once) that records
//!   the arrival time of each event, keyed by the `X-Bench-Id` header (the
//!   relay templates it from `{{id}}`; `X-Bench-Hook` tells the fan-out
//!   webhooks apart, so an event counts as delivered once every webhook's
//!   copy arrived, and duplicates are ignored);
//! - the **ceiling**: a minimal hyper forwarder in its own process (this bench
//!   binary re-executed): receive the POST, forward the body with a pooled
//!   hyper client, answer 200 once the forward completed, no storage;
//! - the **durable floor** (`durable_floor`, `durable_floor_10`): the same
//!   forwarder doing the least a durable relay must: append the body to a
//!   log, answer 202 once an `fdatasync` (group commit) covers it, then
//!   forward 1 or 10 copies and append an unflushed "done" record for each
//!   (see `Forwarding::Logged`). No parsing, templating, signing, indexes
//!   or retries, so no relay on this machine reaches it; the report prints
//!   json_signed and fanout_10 as fractions of it (issue 21's bound);
//! - the **relay**: the real binary (`CARGO_BIN_EXE_relay`, built in the bench
//!   profile) with a generated relay.yaml in a temp dir (SQLite there too);
//! - a **load generator**: `E2E_CONNS` (default 32) keep-alive HTTP/1
//!   connections, one ~1 KiB event per request.
//!
//! The forwarder and the relays of the scenarios run side by side, each
//! warmed up, and **throughput** is measured in `E2E_ROUNDS` rounds (3) that
//! visit every scenario in turn: a closed loop for `E2E_SECS` / rounds
//! seconds, events/s = events delivered at the receiver / time from the
//! first send to the last delivery, waiting for the tail, bounded; a
//! scenario's events/s is the median of its rounds. A machine that gets
//! faster or slower during the run then moves every scenario alike, and a
//! hiccup during one scenario's slot is outvoted by its other rounds. Then, per scenario,
//! **latency** (open loop at half of the ceiling's events/s on a fixed
//! schedule, latency = arrival at the receiver − *scheduled* send time, so a
//! stall is never hidden; p50/p99/p99.9). Peak RSS is the process's VmHWM.
//! `backlog_100k` posts 100,000 events (in batches) while the receiver's
//! port is closed, then opens it and times the drain.
//! `json_signed_pg` and `json_signed_pg3` are `json_signed` on PostgreSQL
//! (a private cluster on this machine, durable settings: every commit
//! flushed) with one and three relay instances; the load spreads its
//! connections over the instances, and each is also measured open loop at
//! 200 events/s. They print the deliveries per instance and the database
//! round trips per delivery (`relay_store_round_trips_total` over the
//! deliveries, polls included).
//!
//! `routing_20` (issue 15) is `json_signed` behind routing as an MSP has it:
//! 20 webhooks, each with a filter, half with a digest of one tenant's
//! events (see `routing_webhooks`); its events/s is judged against
//! `json_signed`'s (routing may cost ≤ 10 %).
//!
//! Prints a table with each scenario's ratio to the ceiling and writes
//! `target/bench/e2e.json`. Knobs (environment): `E2E_SECS` (default 3),
//! `E2E_ROUNDS` (3),
//! `E2E_CONNS` (32), `E2E_CONCURRENCY` (sets `delivery.concurrency_per_webhook`;
//! unset = the relay's default), `E2E_BACKLOG` (100000), `E2E_ONLY`
//! (comma-separated scenario names; the ceiling always runs), `E2E_RATE`
//! (a fixed open-loop rate for every scenario instead of half the ceiling's),
//! `E2E_RELAY` (another relay binary to run, e.g. a `--release` build to
//! compare with this profile's), `E2E_PERF=prefix` (records `perf record` of the relay during each relay
//! scenario's throughput phase into `prefix.<scenario>.data`; `E2E_PERF_CG`
//! picks the call-graph mode, default `fp`, e.g. `dwarf,16384`),
//! `E2E_PG_SETTINGS` (extra `name=value;…` settings of the bench's
//! PostgreSQL cluster), `E2E_PG_LOG=path` (its log, written at the end),
//! `E2E_PG_STATEMENTS=path` (pg_stat_statements, planning tracked: the 30
//! statements the cluster spent most time in, written at the end).
//!
//! Each throughput line ends with the relay's CPU per event over this
//! bench process's (`(3.32 : 1)`): the machine's changes of speed move
//! both, so on an otherwise idle machine that figure moves less than
//! events/s or either CPU figure alone (12 json_signed runs of one relay:
//! relay 64–104 µs per event, this 3.22–3.69); two relay builds still need
//! several alternating runs each (`E2E_RELAY`) to be told apart by less
//! than that, and other load moves it (beside a cargo build json_signed's
//! read 3.49, slack_plugin's 4.51). `TMPDIR=/dev/shm` puts the
//! relays' databases on tmpfs: what the disk costs (ARCHITECTURE.md,
//! "Durability").

mod support;

/// The private PostgreSQL cluster of the `json_signed_pg` scenarios (the
/// tests' harness: initdb in a temp dir, a free loopback port, stopped when
/// the bench ends).
#[path = "../tests/common/pg.rs"]
mod pg;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, AtomicUsize};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use support::verdict::{self, BacklogRun, LatencyRun};
use support::{db_cpu_secs, event_json, free_port, median, stat_cpu_secs};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

const INGEST_TOKEN: &str = "bench-ingest-token-0123456789";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// Most events one phase tracks (bounds memory and the closed loop).
const PHASE_CAP: usize = 1_000_000;
/// Events per request in the backlog ingest (the body stays under 1 MiB).
const BACKLOG_BATCH: usize = 500;
/// An open loop stops once a delivery is this far behind its schedule.
const OVERLOAD: Duration = Duration::from_secs(1);
/// Issue 21's targets, × ceiling: judged, and set against the durable
/// floors in the report's `bound:` lines.
const JSON_SIGNED_MIN: f64 = 0.5;
const FANOUT_10_MIN: f64 = 0.1;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since the bench started (never 0 after start-up).
fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------
// Settings

struct Settings {
    secs: f64,
    /// Throughput rounds per scenario (`secs` split between them).
    rounds: usize,
    conns: usize,
    concurrency: Option<usize>,
    backlog: usize,
    only: Option<Vec<String>>,
    perf: Option<String>,
    /// Fixed open-loop rate instead of half the ceiling's events/s.
    rate: Option<f64>,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
        Settings {
            secs: num("E2E_SECS").unwrap_or(3.0).clamp(1.0, 60.0),
            rounds: num("E2E_ROUNDS")
                .map(|v| v as usize)
                .unwrap_or(3)
                .clamp(1, 20),
            conns: num("E2E_CONNS")
                .map(|v| v as usize)
                .unwrap_or(32)
                .clamp(1, 256),
            concurrency: num("E2E_CONCURRENCY").map(|v| (v as usize).max(1)),
            backlog: num("E2E_BACKLOG")
                .map(|v| v as usize)
                .unwrap_or(100_000)
                .clamp(1000, PHASE_CAP),
            only: std::env::var("E2E_ONLY")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
            perf: std::env::var("E2E_PERF").ok().filter(|v| !v.is_empty()),
            rate: num("E2E_RATE").filter(|r| *r > 0.0),
        }
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    }
}

// ---------------------------------------------------------------------------
// Tracking: one `Phase` per measured run; event ids are `p<phase>-<seq>`.

const SENT: u8 = 1;
const ACCEPTED: u8 = 2;
const REFUSED: u8 = 3;

struct Phase {
    id: u64,
    /// Bit mask with one bit per webhook (fan-out).
    full: u16,
    /// Send time (closed loop) or scheduled send time (open loop), ns.
    sent: Vec<AtomicU64>,
    state: Vec<AtomicU8>,
    arrived: Vec<AtomicU16>,
    /// Arrival of the last copy, ns; 0 = not complete.
    done: Vec<AtomicU64>,
    next: AtomicUsize,
    /// Set to stop the load early (open loop overloaded).
    stop: AtomicBool,
    accepted: AtomicU64,
    refused: AtomicU64,
    completed: AtomicU64,
    last_done: AtomicU64,
    duplicates: AtomicU64,
}

static PHASE_IDS: AtomicU64 = AtomicU64::new(1);

impl Phase {
    fn new(cap: usize, fanout: u32) -> Arc<Phase> {
        let v64 = || (0..cap).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Arc::new(Phase {
            id: PHASE_IDS.fetch_add(1, Relaxed),
            full: ((1u32 << fanout) - 1) as u16,
            sent: v64(),
            state: (0..cap).map(|_| AtomicU8::new(0)).collect(),
            arrived: (0..cap).map(|_| AtomicU16::new(0)).collect(),
            done: v64(),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        })
    }

    fn cap(&self) -> usize {
        self.sent.len()
    }

    fn event_id(&self, seq: usize) -> String {
        format!("p{}-{seq}", self.id)
    }

    /// Records one arrival; false when it is not this phase's.
    fn arrive(&self, id: &str, hook: u32, t: u64) -> bool {
        let Some((p, s)) = id.strip_prefix('p').and_then(|r| r.split_once('-')) else {
            return false;
        };
        let (Ok(p), Ok(seq)) = (p.parse::<u64>(), s.parse::<usize>()) else {
            return false;
        };
        if p != self.id || seq >= self.cap() || hook >= 16 {
            return false;
        }
        let bit = 1u16 << hook;
        let before = self.arrived[seq].fetch_or(bit, AcqRel);
        if before & bit != 0 {
            self.duplicates.fetch_add(1, Relaxed);
        } else if before | bit == self.full {
            self.done[seq].store(t, Relaxed);
            self.completed.fetch_add(1, Relaxed);
            self.last_done.fetch_max(t, Relaxed);
        }
        true
    }

    /// Waits (≤ `limit`) until every accepted event is complete.
    async fn drain(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.completed.load(Relaxed) >= self.accepted.load(Relaxed) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Latencies (ns) of accepted events; `u64::MAX` for undelivered ones.
    fn latencies(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for seq in 0..self.cap().min(self.next.load(Relaxed)) {
            if self.state[seq].load(Relaxed) != ACCEPTED {
                continue;
            }
            let done = self.done[seq].load(Relaxed);
            let sent = self.sent[seq].load(Relaxed);
            out.push(if done == 0 {
                u64::MAX
            } else {
                done.saturating_sub(sent)
            });
        }
        out.sort_unstable();
        out
    }
}

// ---------------------------------------------------------------------------
// The receiver

#[derive(Default)]
struct Receiver {
    phase: ArcSwapOption<Phase>,
    stray: AtomicU64,
}

impl Receiver {
    fn set_phase(&self, p: &Arc<Phase>) {
        self.phase.store(Some(p.clone()));
    }

    fn record(&self, id: Option<&str>, hook: u32, t: u64) {
        let ok = match (id, self.phase.load().as_ref()) {
            (Some(id), Some(p)) => p.arrive(id, hook, t),
            _ => false,
        };
        if !ok {
            self.stray.fetch_add(1, Relaxed);
        }
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Serves the receiver on `listener` until the process ends.
fn serve_receiver(listener: TcpListener, rx: Arc<Receiver>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let rx = rx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let rx = rx.clone();
                    async move {
                        let id = header(&req, "x-bench-id").map(str::to_owned);
                        let hook = header(&req, "x-bench-hook")
                            .and_then(|h| h.parse().ok())
                            .unwrap_or(0);
                        let _ = req.into_body().collect().await;
                        rx.record(id.as_deref(), hook, now_ns());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

// ---------------------------------------------------------------------------
// The ceiling: a minimal forwarder, run as a child process of this binary.
// The same forwarder with a log is the bound of a durable relay.

/// What the forwarder does with a request (`E2E_FORWARDER=listen|upstream|mode`).
#[derive(Clone, Copy)]
enum Forwarding {
    /// The ceiling: forward the body, answer once the forward completed.
    Direct,
    /// The least a durable relay does: append the body to a log and answer
    /// 202 once a flush (`fdatasync`, group commit) covers it, then forward
    /// `copies` copies (`X-Bench-Hook` 0..), each followed by a small
    /// unflushed "done" record, as a relay records its attempts. No
    /// parsing, templating, signing, indexes or retries.
    Logged { copies: u32 },
}

impl Forwarding {
    fn arg(self) -> String {
        match self {
            Forwarding::Direct => "direct".into(),
            Forwarding::Logged { copies } => format!("logged:{copies}"),
        }
    }

    fn parse(arg: &str) -> Forwarding {
        match arg.strip_prefix("logged:") {
            Some(n) => Forwarding::Logged {
                copies: n.parse().expect("logged:<copies>"),
            },
            None => Forwarding::Direct,
        }
    }
}

/// The log of [`Forwarding::Logged`]: a writer thread appends whatever is
/// queued with one `pwrite` per batch into a preallocated file it reuses
/// in a circle (as SQLite reuses its WAL, so a flush never has a size to
/// commit), and hands the batch's waiters to a flusher thread, which
/// `fdatasync`s once for everything written before it started and wakes
/// them; the writer goes on meanwhile.
struct FloorLog {
    tx: std::sync::mpsc::Sender<(Bytes, Option<tokio::sync::oneshot::Sender<()>>)>,
}

/// The log's size before it wraps around.
const FLOOR_LOG_BYTES: u64 = 32 << 20;

impl FloorLog {
    fn open() -> FloorLog {
        use std::os::unix::fs::FileExt as _;
        let path = std::env::temp_dir().join(format!("relay-e2e-floor-{}.log", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create the floor log");
        // Unlinked at once: the space returns when the process ends, however it ends.
        let _ = std::fs::remove_file(&path);
        let zeros = vec![0u8; 1 << 20];
        for i in 0..FLOOR_LOG_BYTES >> 20 {
            file.write_all_at(&zeros, i << 20)
                .expect("preallocate the floor log");
        }
        file.sync_all().expect("sync the floor log");
        let flush_file = file.try_clone().expect("clone the floor log");
        let (tx, rx) =
            std::sync::mpsc::channel::<(Bytes, Option<tokio::sync::oneshot::Sender<()>>)>();
        let (flush_tx, flush_rx) =
            std::sync::mpsc::channel::<Vec<tokio::sync::oneshot::Sender<()>>>();
        std::thread::spawn(move || {
            let (mut at, mut batch) = (0u64, Vec::with_capacity(1 << 20));
            while let Ok(first) = rx.recv() {
                batch.clear();
                let mut waiters = Vec::new();
                for (bytes, waiter) in std::iter::once(first).chain(rx.try_iter()) {
                    batch.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    batch.extend_from_slice(&bytes);
                    waiters.extend(waiter);
                }
                if at + batch.len() as u64 > FLOOR_LOG_BYTES {
                    at = 0;
                }
                file.write_all_at(&batch, at)
                    .expect("append to the floor log");
                at += batch.len() as u64;
                if !waiters.is_empty() && flush_tx.send(waiters).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            while let Ok(mut waiters) = flush_rx.recv() {
                waiters.extend(flush_rx.try_iter().flatten());
                flush_file.sync_data().expect("flush the floor log");
                for w in waiters {
                    let _ = w.send(());
                }
            }
        });
        FloorLog { tx }
    }

    /// Appends `bytes`; resolves once a flush covers them.
    async fn append_flushed(&self, bytes: Bytes) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.tx
            .send((bytes, Some(done)))
            .expect("the floor log's writer");
        flushed.await.expect("the floor log's flusher");
    }

    /// Appends `bytes`, not waiting for a flush.
    fn append(&self, bytes: Bytes) {
        let _ = self.tx.send((bytes, None));
    }
}

type FwdClient = Client<HttpConnector, Full<Bytes>>;

/// POSTs `body` to `upstream` with the bench's headers; true on a 2xx.
async fn forward(
    client: &FwdClient,
    upstream: &hyper::Uri,
    id: Option<&http::HeaderValue>,
    hook: Option<u32>,
    body: Bytes,
) -> bool {
    let mut out =
        Request::post(upstream.clone()).header(http::header::CONTENT_TYPE, "application/json");
    if let Some(id) = id {
        out = out.header("x-bench-id", id);
    }
    if let Some(hook) = hook {
        out = out.header("x-bench-hook", hook);
    }
    let Ok(req) = out.body(Full::new(body)) else {
        return false;
    };
    match client.request(req).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            let _ = resp.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

/// [`Forwarding::Logged`]: returns once the body is flushed to `log`,
/// with `copies` forwards started, each appending an unflushed done record
/// (the id and its hook) when it succeeds.
async fn log_then_forward(
    log: &Arc<FloorLog>,
    copies: u32,
    client: &FwdClient,
    upstream: &hyper::Uri,
    id: Option<http::HeaderValue>,
    body: Bytes,
) {
    log.append_flushed(body.clone()).await;
    for hook in 0..copies {
        let (log, client, upstream, id, body) = (
            log.clone(),
            client.clone(),
            upstream.clone(),
            id.clone(),
            body.clone(),
        );
        tokio::spawn(async move {
            if forward(&client, &upstream, id.as_ref(), Some(hook), body).await {
                let mut done = id.map_or_else(Vec::new, |v| v.as_bytes().to_vec());
                done.extend_from_slice(&hook.to_le_bytes());
                log.append(done.into());
            }
        });
    }
}

fn forwarder_main(spec: &str) {
    // Exit when the parent goes away (stdin closes), whatever happens to it.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let mut parts = spec.split('|');
    let (Some(listen), Some(upstream)) = (parts.next(), parts.next()) else {
        panic!("E2E_FORWARDER=listen|upstream[|mode]");
    };
    let mode = Forwarding::parse(parts.next().unwrap_or("direct"));
    let upstream: hyper::Uri = upstream.parse().expect("upstream url");
    let logged = match mode {
        Forwarding::Direct => None,
        Forwarding::Logged { copies } => Some((Arc::new(FloorLog::open()), copies)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("forwarder bind");
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: FwdClient = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            // As the relay's (`deliver/http.rs`): a fan-out has up to
            // 32 × 10 requests in flight, and a smaller cap would close and
            // reopen connections.
            .pool_max_idle_per_host(1024)
            .build(http);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (client, upstream, logged) = (client.clone(), upstream.clone(), logged.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (client, upstream, logged) =
                        (client.clone(), upstream.clone(), logged.clone());
                    async move {
                        let id = req.headers().get("x-bench-id").cloned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let status = match logged {
                            Some((log, copies)) => {
                                log_then_forward(&log, copies, &client, &upstream, id, body).await;
                                202
                            }
                            None => {
                                if forward(&client, &upstream, id.as_ref(), None, body).await {
                                    200
                                } else {
                                    502
                                }
                            }
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

// ---------------------------------------------------------------------------
// Processes under test

/// A child process (relay or forwarder), killed on drop.
struct Proc {
    child: Child,
    addr: SocketAddr,
    log: Option<PathBuf>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port below the usual ephemeral range, so no outgoing connection
/// takes it while it is meant to stay closed.
fn closed_port() -> u16 {
    for p in 21_000..29_000u16 {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    free_port()
}

async fn wait_listening(p: &mut Proc, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect(p.addr).await.is_ok() {
            return;
        }
        if p.exited() || Instant::now() >= deadline {
            panic!("{what} did not come up on {}:\n{}", p.addr, p.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_forwarder(upstream: &str, mode: Forwarding) -> Proc {
    let port = free_port();
    let child = Command::new(std::env::current_exe().expect("current exe"))
        .env(
            "E2E_FORWARDER",
            format!("127.0.0.1:{port}|{upstream}|{}", mode.arg()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn forwarder");
    let mut p = Proc {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        log: None,
    };
    wait_listening(&mut p, "the forwarder", Duration::from_secs(10)).await;
    p
}

struct Relay {
    proc_: Proc,
    _dir: tempfile::TempDir,
}

async fn start_relay(webhooks: &str, delivery: &str) -> Relay {
    start_relay_on(None, webhooks, delivery).await
}

/// [`start_relay`] on a `storage:` block (`None`: a SQLite file in the
/// relay's temp dir).
async fn start_relay_on(storage: Option<&str>, webhooks: &str, delivery: &str) -> Relay {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    // The relay caches compiled plugin code beside its database. Every
    // relay of the run (and later runs) shares one cache, as one relay's
    // restarts would: only the first start compiles the built-in plugins.
    let cache = bench_dir().join("plugin-cache");
    std::fs::create_dir_all(&cache).expect("plugin cache dir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    std::os::unix::fs::symlink(&cache, dir.path().join("data").join("plugin-cache"))
        .expect("link the plugin cache");
    // In a subdirectory, as in the shipped layout (./relay.yaml,
    // ./data/relay.db): the config watcher watches relay.yaml's
    // directory, and WAL writes beside it would wake it constantly.
    let storage = storage.map(str::to_owned).unwrap_or_else(|| {
        format!(
            "storage:\n  sqlite: {}\n",
            dir.path().join("data").join("relay.db").display()
        )
    });
    let yaml = format!(
        "listen: 127.0.0.1:{port}
{storage}plugins:
  dir: {plugins}
auth:
  tokens:
    - {{ name: bench, token: \"{INGEST_TOKEN}\", role: ingest }}
    - {{ name: ops, token: \"{ADMIN_TOKEN}\", role: admin }}
network:
  allow_private: [127.0.0.0/8]
  allow_http: true
{delivery}webhooks:
{webhooks}",
        plugins = dir.path().join("plugins").display(),
    );
    let config = dir.path().join("relay.yaml");
    std::fs::write(&config, yaml).expect("write relay.yaml");
    let log = dir.path().join("relay.log");
    let binary = std::env::var_os("E2E_RELAY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relay")));
    let child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RELAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn relay");
    let mut proc_ = Proc {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        log: Some(log),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = get(proc_.addr, "/healthz", None).await {
            break;
        }
        if proc_.exited() || Instant::now() >= deadline {
            panic!("the relay did not come up:\n{}", proc_.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Relay { proc_, _dir: dir }
}

/// `{{var}}` written literally into YAML.
fn var(name: &str) -> String {
    format!("\"{{{{{name}}}}}\"")
}

fn json_webhook(i: usize, url: &str, retry_count: Option<u32>) -> String {
    let mut s = format!(
        "  - name: bench-{i}
    url: {url}
    event_types: [\"*\"]
    secret: \"bench-signing-secret-0123456789\"
    signature: sha256
    headers:
      X-Bench-Id: {id}
      X-Bench-Hook: \"{i}\"
    body:
      event: {ty}
      id: {id}
      time: {time}
      title: {title}
      severity: {sev}
      tenant: {tenant}
      details: {data}
",
        id = var("id"),
        ty = var("type"),
        time = var("time"),
        title = var("title"),
        sev = var("severity"),
        tenant = var("tenant_name"),
        data = var("data"),
    );
    if let Some(n) = retry_count {
        let _ = writeln!(s, "    retry_count: {n}");
    }
    s
}

/// The `routing_20` scenario's webhooks (issue 15): 20, each with a filter,
/// half with a digest, as an MSP would have them. Every event is delivered
/// once at once, to `hook` (bench-0, `severity: critical` matches);
/// bench-1..9 filter on tenants no event has (`filtered`); bench-10..19 each
/// take one tenant's events (the events are spread over [`support::TENANTS`]) into
/// digests (members in the accept transaction), delivered to `digest_url`
/// (another receiver: a digest carries no bench id). So each event is sent
/// twice, once alone and once inside a digest, and meets 20 filters.
fn routing_webhooks(hook: &str, digest_url: &str) -> String {
    let mut s = String::new();
    for i in 0..20 {
        let (url, extra) = match i {
            0 => (hook, "    filter: { severity: critical }\n".to_string()),
            1..=9 => (
                hook,
                format!("    filter: {{ tenant_name: \"Globex {i}\" }}\n"),
            ),
            _ => (
                digest_url,
                format!(
                    "    filter: {{ severity: {{ at_least: high }}, tenant_name: \"Acme Corporation {t}\" }}\n    digest: {{ window_s: 2, max_events: 1000, group_by: [tenant_name] }}\n",
                    t = i - 10
                ),
            ),
        };
        let w = json_webhook(i, url, None);
        // json_webhook's `event_types` line, then this webhook's rules.
        let w = w.replacen(
            "    event_types: [\"*\"]\n",
            &format!("    event_types: [\"*\"]\n{extra}"),
            1,
        );
        s.push_str(&w);
    }
    s
}

fn slack_webhook(url: &str) -> String {
    format!(
        "  - name: bench-slack
    url: {url}
    event_types: [\"*\"]
    format: slack
    headers:
      X-Bench-Id: {id}
      X-Bench-Hook: \"0\"
",
        id = var("id")
    )
}

// ---------------------------------------------------------------------------
// Peak RSS

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples VmRSS every 20 ms into `peak` (KiB) until `stop` is set.
fn watch_rss(pid: u32) -> (Arc<AtomicU64>, Arc<AtomicBool>) {
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (peak.clone(), stop.clone());
    tokio::spawn(async move {
        while !s.load(Relaxed) {
            match proc_status_kib(pid, "VmRSS:") {
                Some(kib) => {
                    p.fetch_max(kib, Relaxed);
                }
                None => return,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (peak, stop)
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    stat_cpu_secs(Path::new(&format!("/proc/{pid}/stat")))
}

/// CPU seconds of several processes together.
fn cpus(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|p| cpu_secs(*p)).sum()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// HTTP client side

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn exchange(
    sender: &mut Sender,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    bench_id: Option<&str>,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(id) = bench_id {
        req = req.header("x-bench-id", id);
    }
    if !body.is_empty() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let work = async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// One request on a fresh connection.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, Bytes), String> {
    let mut s = connect(addr).await?;
    exchange(&mut s, addr, "GET", path, token, None, Bytes::new()).await
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    /// Several instances: connection `i` goes to `spread[i % len]`
    /// (empty: every connection to `addr`).
    spread: Vec<SocketAddr>,
    path: &'static str,
    token: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Mode {
    /// As fast as it goes until the deadline.
    Closed { until: Instant },
    /// `total` events, event `i` scheduled at `start + i × period`.
    Open {
        start: Instant,
        period: Duration,
        total: usize,
    },
}

/// Runs the load on `conns` keep-alive connections, one event per request.
async fn load(target: &Target, phase: &Arc<Phase>, mode: Mode, conns: usize) {
    let mut workers = Vec::new();
    for worker in 0..conns {
        let (mut target, phase) = (target.clone(), phase.clone());
        if !target.spread.is_empty() {
            target.addr = target.spread[worker % target.spread.len()];
        }
        workers.push(tokio::spawn(async move {
            let mut sender: Option<Sender> = None;
            loop {
                if phase.stop.load(Relaxed) {
                    return;
                }
                let seq = phase.next.fetch_add(1, Relaxed);
                if seq >= phase.cap() {
                    return;
                }
                let sched = match mode {
                    Mode::Closed { until } => {
                        if Instant::now() >= until {
                            return;
                        }
                        now_ns()
                    }
                    Mode::Open {
                        start,
                        period,
                        total,
                    } => {
                        if seq >= total {
                            return;
                        }
                        let at = start + period.mul_f64(seq as f64);
                        tokio::time::sleep_until(at.into()).await;
                        (at - *EPOCH).as_nanos() as u64
                    }
                };
                let id = phase.event_id(seq);
                let body = Bytes::from(event_json(&id, seq));
                phase.sent[seq].store(sched, Relaxed);
                phase.state[seq].store(SENT, Relaxed);
                if sender.is_none() {
                    sender = connect(target.addr).await.ok();
                }
                let result = match sender.as_mut() {
                    Some(s) => {
                        exchange(
                            s,
                            target.addr,
                            "POST",
                            target.path,
                            target.token,
                            Some(&id),
                            body,
                        )
                        .await
                    }
                    None => Err("cannot connect".into()),
                };
                match result {
                    Ok((status, _)) if (200..300).contains(&status) => {
                        phase.state[seq].store(ACCEPTED, Relaxed);
                        phase.accepted.fetch_add(1, Relaxed);
                    }
                    other => {
                        if other.is_err() {
                            sender = None;
                        }
                        phase.state[seq].store(REFUSED, Relaxed);
                        phase.refused.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

// ---------------------------------------------------------------------------
// Measurements

#[derive(Default, Clone)]
struct Throughput {
    /// CPU time of the process under test per delivered event, µs.
    cpu_us_per_event: Option<f64>,
    /// CPU time of this bench process (load generator + receiver) per event, µs.
    bench_cpu_us_per_event: Option<f64>,
    /// CPU time of the PostgreSQL server's processes per event, µs.
    db_cpu_us_per_event: Option<f64>,
    accepted: u64,
    delivered: u64,
    events_per_s: f64,
    ingest_per_s: f64,
    drained: bool,
    /// Totals behind the rates, so that rounds can be added up.
    sent_s: f64,
    cpu_s: Option<f64>,
    bench_cpu_s: Option<f64>,
    db_cpu_s: Option<f64>,
}

impl Throughput {
    /// CPU per event of the process under test over this bench process's
    /// (what it is worth: the module's doc).
    fn cpu_over_bench(&self) -> Option<f64> {
        let (cpu, bench) = (self.cpu_us_per_event?, self.bench_cpu_us_per_event?);
        (bench > 0.0).then(|| cpu / bench)
    }

    /// One measurement out of several rounds: events/s is the median of the
    /// rounds' (one slot that the machine slowed down, for whatever reason,
    /// does not move it); counts, sending time and CPU are added up.
    fn merge(rounds: &[Throughput]) -> Throughput {
        let sum = |f: fn(&Throughput) -> f64| rounds.iter().map(f).sum::<f64>();
        let sum_opt = |f: fn(&Throughput) -> Option<f64>| rounds.iter().map(f).sum::<Option<f64>>();
        let delivered: u64 = rounds.iter().map(|t| t.delivered).sum();
        let accepted: u64 = rounds.iter().map(|t| t.accepted).sum();
        let sent_s = sum(|t| t.sent_s);
        let (cpu_s, bench_cpu_s) = (sum_opt(|t| t.cpu_s), sum_opt(|t| t.bench_cpu_s));
        let db_cpu_s = sum_opt(|t| t.db_cpu_s);
        let per_event = |c: Option<f64>| {
            c.filter(|_| delivered > 0)
                .map(|c| c * 1e6 / delivered as f64)
        };
        Throughput {
            cpu_us_per_event: per_event(cpu_s),
            bench_cpu_us_per_event: per_event(bench_cpu_s),
            db_cpu_us_per_event: per_event(db_cpu_s),
            accepted,
            delivered,
            events_per_s: median(rounds.iter().map(|t| t.events_per_s).collect()),
            ingest_per_s: accepted as f64 / sent_s.max(1e-9),
            drained: rounds.iter().all(|t| t.drained),
            sent_s,
            cpu_s,
            bench_cpu_s,
            db_cpu_s,
        }
    }
}

#[derive(Default, Clone)]
struct Latency {
    rate: f64,
    /// CPU time of the process under test per delivered event, µs.
    cpu_us_per_event: Option<f64>,
    /// Seconds into the run when a delivery fell more than `OVERLOAD` behind
    /// its schedule and the load was stopped (percentiles are then null).
    overloaded_after: Option<f64>,
    accepted: u64,
    refused: u64,
    lost: u64,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    drained: bool,
}

impl Latency {
    /// The figures the p99 verdict judges.
    fn run(&self) -> LatencyRun {
        LatencyRun {
            rate: self.rate,
            overloaded_after_s: self.overloaded_after,
            accepted: self.accepted,
            refused: self.refused,
            undelivered: self.lost,
            p99_ms: self.p99,
        }
    }
}

fn percentile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    let v = sorted[i];
    (v != u64::MAX).then(|| v as f64 / 1e6)
}

/// What a phase drives and watches: the process under test behind
/// `target`, the receiver, the connections and the fan-out.
#[derive(Clone, Copy)]
struct Under<'a> {
    target: &'a Target,
    /// The process whose RSS is watched (the first instance).
    pid: u32,
    /// The processes whose CPU is "under test": every instance.
    cpu_pids: &'a [u32],
    /// The postmaster of the scenario's PostgreSQL cluster: its
    /// processes' CPU is counted apart.
    db: Option<u32>,
    rx: &'a Receiver,
    conns: usize,
    fanout: u32,
}

async fn throughput(u: Under<'_>, secs: f64, drain_limit: Duration) -> Throughput {
    let Under {
        target,
        cpu_pids,
        db,
        rx,
        conns,
        fanout,
        ..
    } = u;
    let phase = Phase::new(PHASE_CAP, fanout);
    rx.set_phase(&phase);
    let db_cpu0 = db.and_then(db_cpu_secs);
    let cpu0 = (cpus(cpu_pids), cpu_secs(std::process::id()));
    let start = now_ns();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    load(target, &phase, Mode::Closed { until }, conns).await;
    let sent_s = (now_ns() - start) as f64 / 1e9;
    let drained = phase.drain(drain_limit).await;
    let last = phase.last_done.load(Relaxed).max(start + 1);
    let cpu1 = (cpus(cpu_pids), cpu_secs(std::process::id()));
    let db_cpu1 = db.and_then(db_cpu_secs);
    let used = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    let delivered = phase.completed.load(Relaxed);
    let secs = (last - start) as f64 / 1e9;
    Throughput::merge(&[Throughput {
        accepted: phase.accepted.load(Relaxed),
        delivered,
        events_per_s: delivered as f64 / secs,
        drained,
        sent_s,
        cpu_s: used(cpu0.0, cpu1.0),
        bench_cpu_s: used(cpu0.1, cpu1.1),
        db_cpu_s: used(db_cpu0, db_cpu1),
        ..Throughput::default()
    }])
}

async fn latency(u: Under<'_>, rate: f64, secs: f64, drain_limit: Duration) -> Latency {
    let Under {
        target,
        cpu_pids,
        rx,
        conns,
        fanout,
        ..
    } = u;
    let total = ((rate * secs) as usize).clamp(1, PHASE_CAP);
    let phase = Phase::new(total, fanout);
    rx.set_phase(&phase);
    let cpu0 = cpus(cpu_pids);
    let start = Instant::now() + Duration::from_millis(20);
    let period = Duration::from_secs_f64(1.0 / rate);
    // Stops the load once the oldest undelivered event is more than
    // OVERLOAD behind its schedule: the rate is beyond what the target
    // sustains, and waiting longer only grows the queue.
    let watch = async {
        let mut low = 0usize;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while low < total
                && (phase.done[low].load(Relaxed) != 0 || phase.state[low].load(Relaxed) == REFUSED)
            {
                low += 1;
            }
            if low >= total {
                return None;
            }
            let due = start + period.mul_f64(low as f64);
            let now = Instant::now();
            if now > due && now - due > OVERLOAD {
                phase.stop.store(true, Relaxed);
                return Some((now - start).as_secs_f64());
            }
        }
    };
    let overloaded_after = tokio::select! {
        () = load(target, &phase, Mode::Open { start, period, total }, conns) => None,
        o = watch => o,
    };
    if overloaded_after.is_some() {
        // Let the workers see `stop` and finish their request in flight.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = phase.drain(drain_limit).await;
    let delivered = phase.completed.load(Relaxed);
    let cpu_us_per_event = match (cpu0, cpus(cpu_pids)) {
        (Some(a), Some(b)) if delivered > 0 => Some((b - a) * 1e6 / delivered as f64),
        _ => None,
    };
    let lat = phase.latencies();
    let pct = |q| {
        if overloaded_after.is_some() {
            None
        } else {
            percentile(&lat, q)
        }
    };
    Latency {
        rate,
        cpu_us_per_event,
        overloaded_after,
        accepted: phase.accepted.load(Relaxed),
        refused: phase.refused.load(Relaxed),
        lost: lat.iter().filter(|v| **v == u64::MAX).count() as u64,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        drained,
    }
}

/// A short closed-loop warm-up; waits for its tail.
async fn warm_up(u: Under<'_>) {
    let _ = throughput(u, 0.5, Duration::from_secs(30)).await;
}

#[derive(Default, Clone)]
struct Row {
    scenario: &'static str,
    tput: Option<Throughput>,
    lat: Option<Latency>,
    /// Latency at half of this scenario's own events/s.
    own: Option<Latency>,
    peak_rss_kib: Option<u64>,
    drain_s: Option<f64>,
    /// Events/s of each throughput round.
    rounds: Vec<f64>,
    note: String,
    /// Several instances / a shared store: open-loop latency at
    /// [`PG_RATE`] events/s.
    at_fixed: Option<Latency>,
    /// Deliveries (succeeded attempts) per instance.
    per_instance: Vec<u64>,
    /// Database round trips per delivery over the whole scenario.
    round_trips: Option<f64>,
}

impl Row {
    fn events_per_s(&self) -> Option<f64> {
        self.tput.as_ref().map(|t| t.events_per_s)
    }
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

fn print_phase(name: &str, t: Option<&Throughput>, l: Option<&Latency>) {
    if let Some(t) = t {
        println!(
            "  {name}: throughput {:.0} events/s delivered ({} of {} accepted{}; ingest {:.0}/s); CPU per event: {} µs under test{}, {} µs load generator + receiver ({} : 1)",
            t.events_per_s,
            t.delivered,
            t.accepted,
            if t.drained {
                ""
            } else {
                ", NOT DRAINED in time"
            },
            t.ingest_per_s,
            fmt_opt(t.cpu_us_per_event, 0),
            t.db_cpu_us_per_event
                .map(|d| format!(" + {d:.0} µs database"))
                .unwrap_or_default(),
            fmt_opt(t.bench_cpu_us_per_event, 0),
            fmt_opt(t.cpu_over_bench(), 2),
        );
    }
    if let Some(l) = l {
        if let Some(after) = l.overloaded_after {
            println!(
                "  {name}: latency at {:.0} events/s: OVERLOADED — after {after:.1} s a delivery was more than {} s behind its schedule; load stopped ({} accepted, {} refused, {} undelivered{})",
                l.rate,
                OVERLOAD.as_secs(),
                l.accepted,
                l.refused,
                l.lost,
                if l.drained {
                    ""
                } else {
                    ", NOT DRAINED in time"
                }
            );
            return;
        }
        println!(
            "  {name}: latency at {:.0} events/s: p50 {} ms, p99 {} ms, p99.9 {} ms ({} accepted, {} refused, {} undelivered{}); CPU per event {} µs",
            l.rate,
            fmt_opt(l.p50, 2),
            fmt_opt(l.p99, 2),
            fmt_opt(l.p999, 2),
            l.accepted,
            l.refused,
            l.lost,
            if l.drained {
                ""
            } else {
                ", NOT DRAINED in time"
            },
            fmt_opt(l.cpu_us_per_event, 0),
        );
    }
}

/// Text of `GET /metrics` lines for the attempt counters.
async fn attempt_counters(addr: SocketAddr) -> String {
    match get(addr, "/metrics", None).await {
        Ok((200, body)) => String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with("relay_delivery_attempts_total{"))
            .map(|l| l.trim_start_matches("relay_delivery_attempts_total"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// A process under test, up for the whole comparison: the forwarder or a
/// relay. Their throughput phases are interleaved in rounds (ceiling, then
/// each relay, then again), so a machine that gets slower or faster during
/// the run moves every scenario alike and the ratios hold.
struct Subject {
    name: &'static str,
    /// The forwarder (ceiling) or the relay; dropping it stops the process.
    process: Held,
    target: Target,
    fanout: u32,
    rss: (Arc<AtomicU64>, Arc<AtomicBool>),
    perf: Option<Child>,
    rounds: Vec<Throughput>,
    /// Every process under test (all instances).
    cpu_pids: Vec<u32>,
    /// The postmaster of the PostgreSQL cluster the relays use.
    db: Option<u32>,
}

enum Held {
    Forwarder(Proc),
    Relay(Relay),
    /// Instances sharing one PostgreSQL database (CPU: all of them; RSS:
    /// the first).
    Relays(Vec<Relay>),
}

impl Subject {
    fn proc_(&mut self) -> &mut Proc {
        match &mut self.process {
            Held::Forwarder(p) => p,
            Held::Relay(r) => &mut r.proc_,
            Held::Relays(rs) => &mut rs[0].proc_,
        }
    }

    fn under<'a>(&'a self, s: &Settings, rx: &'a Receiver) -> Under<'a> {
        let pid = match &self.process {
            Held::Forwarder(p) => p.pid(),
            Held::Relay(r) => r.proc_.pid(),
            Held::Relays(rs) => rs[0].proc_.pid(),
        };
        Under {
            target: &self.target,
            pid,
            cpu_pids: &self.cpu_pids,
            db: self.db,
            rx,
            conns: s.conns,
            fanout: self.fanout,
        }
    }
}

/// The forwarder as a subject: the ceiling ([`Forwarding::Direct`]) or a
/// bound of the durable relays ([`Forwarding::Logged`]).
async fn start_forwarder_subject(
    name: &'static str,
    mode: Forwarding,
    hook: &str,
    s: &Settings,
    rx: &Receiver,
) -> Subject {
    let fwd = start_forwarder(hook, mode).await;
    println!("{name}: forwarder pid {} on {}", fwd.pid(), fwd.addr);
    let target = Target {
        spread: vec![],
        addr: fwd.addr,
        path: "/api/v1/events",
        token: None,
    };
    let fanout = match mode {
        Forwarding::Direct => 1,
        Forwarding::Logged { copies } => copies,
    };
    subject(name, Held::Forwarder(fwd), target, fanout, None, s, rx).await
}

async fn start_relay_subject(
    name: &'static str,
    webhooks: String,
    fanout: u32,
    s: &Settings,
    rx: &Receiver,
) -> Subject {
    let delivery = match s.concurrency {
        Some(c) => format!("delivery:\n  concurrency_per_webhook: {c}\n"),
        None => String::new(),
    };
    let relay = start_relay(&webhooks, &delivery).await;
    println!(
        "{name}: relay pid {} on {}",
        relay.proc_.pid(),
        relay.proc_.addr
    );
    let target = Target {
        spread: vec![],
        addr: relay.proc_.addr,
        path: "/api/v1/events",
        token: Some(INGEST_TOKEN),
    };
    subject(name, Held::Relay(relay), target, fanout, None, s, rx).await
}

/// The open-loop rate of the shared-store latency target (issue 19).
const PG_RATE: f64 = 200.0;

/// The bench cluster's settings: [`pg::DURABLE`] plus `E2E_PG_SETTINGS`
/// (`name=value` pairs separated by `;`, e.g. to log checkpoints).
fn pg_settings() -> Vec<&'static str> {
    let extra = std::env::var("E2E_PG_SETTINGS").unwrap_or_default();
    let extra: &'static str = Box::leak(extra.into_boxed_str());
    let statements = std::env::var_os("E2E_PG_STATEMENTS").map(|_| {
        [
            "shared_preload_libraries=pg_stat_statements",
            "pg_stat_statements.track_planning=on",
        ]
    });
    pg::DURABLE
        .iter()
        .copied()
        .chain(statements.into_iter().flatten())
        .chain(extra.split(';').map(str::trim).filter(|s| !s.is_empty()))
        .collect()
}

/// `E2E_PG_STATEMENTS`: the statements the cluster spent most time in
/// over the whole run (pg_stat_statements), written to `path`.
async fn write_pg_statements(cluster: &pg::PgCluster, path: &Path) {
    let dump = async {
        let (client, conn) =
            tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await?;
        let rows = client
            .query(
                "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g'),
                        plans, total_plan_time
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 30",
                &[],
            )
            .await?;
        let mut out = String::from("calls\ttotal ms\tµs/call\trows\tplans\tplan ms\tquery\n");
        for r in rows {
            let (calls, ms): (i64, f64) = (r.get(0), r.get(1));
            let _ = writeln!(
                out,
                "{calls}\t{ms:.0}\t{:.0}\t{}\t{}\t{:.0}\t{}",
                ms * 1000.0 / calls.max(1) as f64,
                r.get::<_, i64>(2),
                r.get::<_, i64>(4),
                r.get::<_, f64>(5),
                r.get::<_, String>(3)
            );
        }
        Ok::<_, tokio_postgres::Error>(out)
    };
    match dump.await {
        Ok(out) => match std::fs::write(path, out) {
            Ok(()) => println!("postgres statements: {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        },
        Err(e) => eprintln!("pg_stat_statements: {e}"),
    }
}

/// `instances` relays on one fresh database of `cluster`.
async fn start_pg_subject(
    name: &'static str,
    cluster: &pg::PgCluster,
    instances: usize,
    webhooks: String,
    s: &Settings,
    rx: &Receiver,
) -> Subject {
    let url = cluster.fresh_db().await;
    let storage = format!("storage:\n  postgres: \"{url}\"\n");
    let delivery = match s.concurrency {
        Some(c) => format!("delivery:\n  concurrency_per_webhook: {c}\n"),
        None => String::new(),
    };
    let mut relays = Vec::new();
    for _ in 0..instances {
        relays.push(start_relay_on(Some(&storage), &webhooks, &delivery).await);
    }
    let addrs: Vec<SocketAddr> = relays.iter().map(|r| r.proc_.addr).collect();
    println!(
        "{name}: {instances} relay(s) on postgres 127.0.0.1:{}: pids {:?}",
        cluster.port,
        relays.iter().map(|r| r.proc_.pid()).collect::<Vec<_>>()
    );
    let target = Target {
        addr: addrs[0],
        spread: addrs,
        path: "/api/v1/events",
        token: Some(INGEST_TOKEN),
    };
    let db = cluster.postmaster_pid();
    subject(name, Held::Relays(relays), target, 1, db, s, rx).await
}

/// A sample of `GET /metrics` (exact name and labels), 0 when absent.
async fn metric(addr: SocketAddr, sample: &str) -> u64 {
    match get(addr, "/metrics", Some(ADMIN_TOKEN)).await {
        Ok((200, body)) => String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse::<f64>().ok())?
            })
            .unwrap_or(0.0) as u64,
        _ => 0,
    }
}

/// Watches the process's RSS, warms it up, and starts `perf` on a relay
/// when asked (it samples only that process, so the other scenarios'
/// rounds add nothing to its profile).
async fn subject(
    name: &'static str,
    process: Held,
    target: Target,
    fanout: u32,
    db: Option<u32>,
    s: &Settings,
    rx: &Receiver,
) -> Subject {
    let cpu_pids = match &process {
        Held::Forwarder(p) => vec![p.pid()],
        Held::Relay(r) => vec![r.proc_.pid()],
        Held::Relays(rs) => rs.iter().map(|r| r.proc_.pid()).collect(),
    };
    let mut sub = Subject {
        name,
        process,
        target,
        fanout,
        rss: (Arc::default(), Arc::default()),
        perf: None,
        rounds: Vec::new(),
        cpu_pids,
        db,
    };
    let pid = sub.under(s, rx).pid;
    sub.rss = watch_rss(pid);
    let u = sub.under(s, rx);
    warm_up(u).await;
    if let (Some(prefix), Held::Relay(_) | Held::Relays(_)) = (&s.perf, &sub.process) {
        let pids: Vec<String> = sub.cpu_pids.iter().map(u32::to_string).collect();
        sub.perf = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "--call-graph"])
            .arg(std::env::var("E2E_PERF_CG").unwrap_or_else(|_| "fp".into()))
            .args(["-p", &pids.join(","), "-o"])
            .arg(format!("{prefix}.{name}.data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }
    sub
}

/// After the rounds: the throughput line, the latency phases (at `rate`
/// and, for a relay, at half its own events/s for half as long), the attempt counters, the
/// peak RSS; then the process is stopped.
async fn finish(mut sub: Subject, s: &Settings, rx: &Receiver, rate: f64) -> Row {
    if let Some(mut p) = sub.perf.take() {
        // SIGINT makes perf write its file and exit.
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    let name = sub.name;
    let t = Throughput::merge(&sub.rounds);
    let u = sub.under(s, rx);
    let l = latency(u, rate, s.secs, Duration::from_secs(60)).await;
    print_phase(name, Some(&t), Some(&l));
    let mut at_fixed = None;
    let mut per_instance = Vec::new();
    let mut round_trips = None;
    let own = match &sub.process {
        Held::Forwarder(_) => None,
        Held::Relays(rs) => {
            let fixed = latency(u, PG_RATE, s.secs, Duration::from_secs(60)).await;
            print_phase(
                &format!("{name} (at {PG_RATE:.0} events/s)"),
                None,
                Some(&fixed),
            );
            at_fixed = Some(fixed);
            let (mut trips, mut delivered) = (0, 0);
            for r in rs {
                let n = metric(
                    r.proc_.addr,
                    "relay_delivery_attempts_total{status=\"succeeded\"}",
                )
                .await;
                per_instance.push(n);
                delivered += n;
                trips += metric(r.proc_.addr, "relay_store_round_trips_total").await;
            }
            round_trips = (delivered > 0).then(|| trips as f64 / delivered as f64);
            println!(
                "  {name}: deliveries per instance {per_instance:?}; database round trips {trips} for {delivered} deliveries ({:.2} per delivery, polls and reads included)",
                round_trips.unwrap_or(f64::NAN)
            );
            None
        }
        Held::Relay(r) => {
            // Half as long as the main phases: a second look, not a target
            // (it keeps a clean checkout's run under a minute).
            let own_rate = (t.events_per_s / 2.0).max(10.0);
            let own = latency(u, own_rate, s.secs / 2.0, Duration::from_secs(60)).await;
            print_phase(&format!("{name} (half its own events/s)"), None, Some(&own));
            println!(
                "  {name}: attempts {}",
                attempt_counters(r.proc_.addr).await
            );
            Some(own)
        }
    };
    sub.rss.1.store(true, Relaxed);
    let hwm = proc_status_kib(u.pid, "VmHWM:")
        .unwrap_or(0)
        .max(sub.rss.0.load(Relaxed));
    if sub.proc_().exited() {
        eprintln!("warning: {name}'s process exited early");
    }
    Row {
        scenario: name,
        tput: Some(t),
        lat: Some(l),
        own,
        peak_rss_kib: Some(hwm),
        drain_s: None,
        rounds: sub.rounds.iter().map(|t| t.events_per_s.round()).collect(),
        note: match sub.process {
            Held::Forwarder(_) => "forwarder process".into(),
            Held::Relay(_) => String::new(),
            Held::Relays(ref rs) => format!(
                "{} instance(s) on one PostgreSQL database; CPU of all of them, RSS of the first",
                rs.len()
            ),
        },
        at_fixed,
        per_instance,
        round_trips,
    }
}

async fn backlog_scenario(s: &Settings, rx: &Arc<Receiver>) -> Row {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let delivery = format!(
        "delivery:\n  retry_base_ms: 200\n  retry_max_ms: 1000\n  breaker_threshold: 0\n{}",
        s.concurrency
            .map(|c| format!("  concurrency_per_webhook: {c}\n"))
            .unwrap_or_default()
    );
    let relay = start_relay(&json_webhook(0, &url, Some(10)), &delivery).await;
    let pid = relay.proc_.pid();
    let addr = relay.proc_.addr;
    println!("backlog_100k: relay pid {pid} on {addr}; receiver port {port} closed");
    let (rss, stop) = watch_rss(pid);
    let n = s.backlog;
    let phase = Phase::new(n, 1);
    rx.set_phase(&phase);
    let t0 = Instant::now();
    let batches = n.div_ceil(BACKLOG_BATCH);
    let next_batch = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (phase, next_batch) = (phase.clone(), next_batch.clone());
        workers.push(tokio::spawn(async move {
            let mut sender: Option<Sender> = None;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let b = next_batch.fetch_add(1, Relaxed);
                if b >= batches || Instant::now() >= deadline {
                    return;
                }
                let range = b * BACKLOG_BATCH..((b + 1) * BACKLOG_BATCH).min(n);
                let mut body = String::with_capacity(range.len() * 1200 + 2);
                body.push('[');
                for seq in range.clone() {
                    if seq > range.start {
                        body.push(',');
                    }
                    body.push_str(&event_json(&phase.event_id(seq), seq));
                    phase.sent[seq].store(now_ns(), Relaxed);
                    phase.state[seq].store(SENT, Relaxed);
                }
                body.push(']');
                phase.next.fetch_max(range.end, Relaxed);
                if sender.is_none() {
                    sender = connect(addr).await.ok();
                }
                let r = match sender.as_mut() {
                    Some(snd) => {
                        exchange(
                            snd,
                            addr,
                            "POST",
                            "/api/v1/events",
                            Some(INGEST_TOKEN),
                            None,
                            Bytes::from(body),
                        )
                        .await
                    }
                    None => Err("cannot connect".into()),
                };
                let ok = matches!(r, Ok((202, _)));
                if r.is_err() {
                    sender = None;
                }
                for seq in range.clone() {
                    phase.state[seq].store(if ok { ACCEPTED } else { REFUSED }, Relaxed);
                }
                let counter = if ok { &phase.accepted } else { &phase.refused };
                counter.fetch_add(range.len() as u64, Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let ingest_s = t0.elapsed().as_secs_f64();
    let accepted = phase.accepted.load(Relaxed);
    let pending_peak = rss
        .load(Relaxed)
        .max(proc_status_kib(pid, "VmRSS:").unwrap_or(0));
    let before_up = attempt_counters(addr).await;
    println!(
        "  backlog_100k: {accepted} events accepted ({} refused) in {ingest_s:.1} s ({:.0} events/s, batches of {BACKLOG_BATCH}); peak RSS so far {:.1} MiB",
        phase.refused.load(Relaxed),
        accepted as f64 / ingest_s,
        mib(pending_peak)
    );
    println!("  backlog_100k: attempts before the receiver is up: {before_up}");
    // Receiver up.
    let listener = loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            Err(e) if t0.elapsed() < Duration::from_secs(180) => {
                eprintln!("receiver port {port} busy ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot open the receiver port {port}: {e}"),
        }
    };
    let up = now_ns();
    let already = phase.completed.load(Relaxed);
    serve_receiver(listener, rx.clone());
    let drained = phase.drain(Duration::from_secs(150)).await;
    let delivered = phase.completed.load(Relaxed);
    let last = phase.last_done.load(Relaxed).max(up + 1);
    let drain_s = (last - up) as f64 / 1e9;
    let after = attempt_counters(addr).await;
    stop.store(true, Relaxed);
    let hwm = proc_status_kib(pid, "VmHWM:")
        .unwrap_or(0)
        .max(rss.load(Relaxed));
    println!(
        "  backlog_100k: receiver up; {delivered} of {accepted} delivered{} {drain_s:.1} s after it came up ({:.0} events/s); peak RSS {:.1} MiB (while pending: {:.1} MiB); duplicates {}",
        if drained {
            ""
        } else {
            " (NOT DRAINED in time)"
        },
        (delivered - already) as f64 / drain_s,
        mib(hwm),
        mib(pending_peak),
        phase.duplicates.load(Relaxed)
    );
    println!("  backlog_100k: attempts at the end: {after}");
    Row {
        scenario: "backlog_100k",
        tput: Some(Throughput {
            accepted,
            delivered,
            events_per_s: (delivered - already) as f64 / drain_s,
            ingest_per_s: accepted as f64 / ingest_s,
            drained,
            ..Throughput::default()
        }),
        lat: None,
        own: None,
        peak_rss_kib: Some(hwm),
        drain_s: Some(drain_s),
        rounds: Vec::new(),
        at_fixed: None,
        per_instance: Vec::new(),
        round_trips: None,
        note: format!(
            "ingest {ingest_s:.1} s in batches of {BACKLOG_BATCH}; peak RSS while pending {:.1} MiB",
            mib(pending_peak)
        ),
    }
}

// ---------------------------------------------------------------------------

fn main() {
    if let Ok(spec) = std::env::var("E2E_FORWARDER") {
        forwarder_main(&spec);
        return;
    }
    LazyLock::force(&EPOCH);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let s = Settings::from_env();
    let began = Instant::now();
    let size = event_json("p1-000000", 0).len();
    println!(
        "e2e: {} keep-alive HTTP/1 connections, one {size}-byte event per request; {} s closed loop (throughput), then {} s open loop at half the ceiling's events/s (latency); {} CPUs",
        s.conns,
        s.secs,
        s.secs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let rx = Arc::new(Receiver::default());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let recv_addr = listener.local_addr().expect("receiver addr");
    serve_receiver(listener, rx.clone());
    let hook = format!("http://{recv_addr}/hook");

    // Fills the shared plugin cache (a cold cache costs one relay start
    // ~5 s of compiling), so no scenario's start or peak RSS includes it.
    let warm = Instant::now();
    drop(start_relay(&json_webhook(0, &hook, None), "").await);
    println!(
        "plugin cache: {} warm after {:.1} s",
        bench_dir().join("plugin-cache").display(),
        warm.elapsed().as_secs_f64()
    );

    // 1–4. The ceiling and the relays, all up at once; their throughput
    // phases interleaved in rounds.
    let mut subjects =
        vec![start_forwarder_subject("ceiling", Forwarding::Direct, &hook, &s, &rx).await];
    // What the least durable relay reaches on this machine: the bound of
    // json_signed and fanout_10 (issue 21).
    for (name, copies) in [("durable_floor", 1), ("durable_floor_10", 10)] {
        if s.wants(name) {
            let mode = Forwarding::Logged { copies };
            subjects.push(start_forwarder_subject(name, mode, &hook, &s, &rx).await);
        }
    }
    if s.wants("json_signed") {
        subjects.push(
            start_relay_subject("json_signed", json_webhook(0, &hook, None), 1, &s, &rx).await,
        );
    }
    if s.wants("slack_plugin") {
        subjects.push(start_relay_subject("slack_plugin", slack_webhook(&hook), 1, &s, &rx).await);
    }
    if s.wants("fanout_10") {
        let hooks: String = (0..10).map(|i| json_webhook(i, &hook, None)).collect();
        subjects.push(start_relay_subject("fanout_10", hooks, 10, &s, &rx).await);
    }
    // Routing (issue 15): 20 webhooks with filters, half with digests; the
    // digests go to a receiver of their own.
    let digests = Arc::new(Receiver::default());
    if s.wants("routing_20") {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind digest receiver");
        let digest_url = format!("http://{}/digest", listener.local_addr().expect("addr"));
        serve_receiver(listener, digests.clone());
        subjects.push(
            start_relay_subject(
                "routing_20",
                routing_webhooks(&hook, &digest_url),
                1,
                &s,
                &rx,
            )
            .await,
        );
    }
    // The same relay on PostgreSQL: one instance, and three sharing it.
    let cluster = (s.wants("json_signed_pg") || s.wants("json_signed_pg3"))
        .then(|| pg::PgCluster::start(&pg_settings()));
    if let Some(cluster) = &cluster {
        for (name, n) in [("json_signed_pg", 1), ("json_signed_pg3", 3)] {
            if s.wants(name) {
                let hooks = json_webhook(0, &hook, None);
                subjects.push(start_pg_subject(name, cluster, n, hooks, &s, &rx).await);
            }
        }
    }
    let slice = s.secs / s.rounds as f64;
    for round in 1..=s.rounds {
        let mut line = format!("round {round}/{}:", s.rounds);
        for i in 0..subjects.len() {
            // The CPU the other subjects spent during this slot (work left
            // over from their own slots would land on this one).
            let others: Vec<u32> = (subjects.iter().enumerate())
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, o)| o.cpu_pids.iter().copied())
                .collect();
            let before = cpus(&others);
            let sub = &mut subjects[i];
            let t = throughput(sub.under(&s, &rx), slice, Duration::from_secs(60)).await;
            let _ = write!(line, " {} {:.0}/s", sub.name, t.events_per_s);
            if let (Some(a), Some(b)) = (before, cpus(&others)) {
                let _ = write!(line, " (others {:.0} ms CPU)", (b - a) * 1e3);
            }
            sub.rounds.push(t);
        }
        println!("{line}");
    }
    let mut subjects = subjects.into_iter();
    let mut rows = Vec::new();
    let mut rate = 0.0;
    if let Some(ceiling) = subjects.next() {
        let t = Throughput::merge(&ceiling.rounds);
        rate = s.rate.unwrap_or(t.events_per_s / 2.0).max(10.0);
        rows.push(finish(ceiling, &s, &rx, rate).await);
    }
    for sub in subjects {
        let mut row = finish(sub, &s, &rx, rate).await;
        if row.scenario == "routing_20" {
            row.note = format!(
                "20 webhooks with filters (1 delivers every event, 9 filter it out, 10 digest one tenant each); {} digest deliveries by the end",
                digests.stray.load(Relaxed)
            );
        }
        if row.scenario.starts_with("durable_floor") {
            row.note =
                "the forwarder with a flushed log before its 202 (a bound, not a relay)".into();
        }
        if row.scenario == "fanout_10" {
            row.note =
                "events/s = events with all 10 deliveries arrived; latency to the last of the 10"
                    .into();
        }
        rows.push(row);
    }
    // 5. Backlog.
    if s.wants("backlog_100k") {
        rows.push(backlog_scenario(&s, &rx).await);
    }
    if let (Some(cluster), Some(path)) = (&cluster, std::env::var_os("E2E_PG_STATEMENTS")) {
        write_pg_statements(cluster, Path::new(&path)).await;
    }
    if let (Some(cluster), Some(path)) = (&cluster, std::env::var_os("E2E_PG_LOG")) {
        match std::fs::write(&path, cluster.log()) {
            Ok(()) => println!("postgres log: {}", Path::new(&path).display()),
            Err(e) => eprintln!("cannot write {}: {e}", Path::new(&path).display()),
        }
    }
    let stray = rx.stray.load(Relaxed);
    report(&s, &rows, rate, stray, began.elapsed());
}

fn report(s: &Settings, rows: &[Row], rate: f64, stray: u64, took: Duration) {
    let ceiling = rows[0].events_per_s().unwrap_or(0.0);
    let ratio = |r: &Row| {
        r.events_per_s()
            .map(|e| e / ceiling)
            .filter(|x| x.is_finite())
    };
    println!();
    println!(
        "{:<14} {:>10} {:>7} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "scenario", "events/s", "ratio", "p50 ms", "p99 ms", "p99.9 ms", "RSS MiB", "drain s"
    );
    let lat_cell = |l: Option<&Latency>, f: fn(&Latency) -> Option<f64>| match l {
        Some(l) if l.overloaded_after.is_some() => "overload".to_string(),
        Some(l) if l.refused > 0 => format!("{}*", fmt_opt(f(l), 2)),
        l => fmt_opt(l.and_then(f), 2),
    };
    for r in rows {
        let l = r.lat.as_ref();
        println!(
            "{:<14} {:>10} {:>7} {:>9} {:>9} {:>10} {:>9} {:>8}",
            r.scenario,
            fmt_opt(r.events_per_s(), 0),
            fmt_opt(ratio(r), 3),
            lat_cell(l, |l| l.p50),
            lat_cell(l, |l| l.p99),
            lat_cell(l, |l| l.p999),
            fmt_opt(r.peak_rss_kib.map(mib), 1),
            fmt_opt(r.drain_s, 1),
        );
    }
    if rows.iter().any(|r| r.own.is_some()) {
        println!();
        println!(
            "{:<14} {:>10} {:>9} {:>9} {:>10}   (latency at half the scenario's own events/s)",
            "scenario", "rate/s", "p50 ms", "p99 ms", "p99.9 ms"
        );
        for r in rows {
            if let Some(o) = &r.own {
                println!(
                    "{:<14} {:>10.0} {:>9} {:>9} {:>10}",
                    r.scenario,
                    o.rate,
                    lat_cell(Some(o), |l| l.p50),
                    lat_cell(Some(o), |l| l.p99),
                    lat_cell(Some(o), |l| l.p999),
                );
            }
        }
    }
    println!(
        "events/s: closed loop, events delivered at the receiver per second (fanout_10: events with all 10 copies arrived; backlog_100k: drain rate).\n\
         latency: open loop at {rate:.0} events/s ({}) on {} connections, from the scheduled send time to the arrival at the receiver (fanout_10: of the last copy); \"overload\": the relay fell more than {} s behind that schedule and the load was stopped; \"*\": some requests were refused, the percentile covers the accepted ones only.\n\
         RSS: peak (VmHWM) of the forwarder (ceiling) or relay process.{}",
        if s.rate.is_some() {
            "E2E_RATE"
        } else {
            "half the ceiling"
        },
        s.conns,
        OVERLOAD.as_secs(),
        match s.concurrency {
            Some(c) => format!(" relay delivery.concurrency_per_webhook: {c}."),
            None => String::new(),
        }
    );
    // Targets of issues 7 and 21, each printed when its scenario was
    // asked for (MISSED with the reason when it has no figure).
    let by = |n: &str| rows.iter().find(|r| r.scenario == n);
    let mut checks = Vec::new();
    if s.wants("json_signed") {
        checks.push(
            verdict::at_least(
                &format!("json_signed ≥ {JSON_SIGNED_MIN} × ceiling"),
                "json_signed events/s ratio to the ceiling",
                by("json_signed").and_then(ratio),
                JSON_SIGNED_MIN,
            )
            .to_string(),
        );
    }
    if s.wants("json_signed") && s.wants("slack_plugin") {
        let gap = by("slack_plugin")
            .and_then(Row::events_per_s)
            .zip(by("json_signed").and_then(Row::events_per_s))
            .map(|(sl, js)| (js - sl).abs() / js * 100.0);
        checks.push(
            verdict::at_most(
                "slack_plugin within 15 % of json_signed (in %)",
                "slack_plugin and json_signed events/s",
                gap,
                15.0,
            )
            .to_string(),
        );
    }
    if s.wants("fanout_10") {
        checks.push(
            verdict::at_least(
                &format!(
                    "fanout_10 ≥ {FANOUT_10_MIN} × ceiling (an event counted once all 10 arrived)"
                ),
                "fanout_10 events/s ratio to the ceiling",
                by("fanout_10").and_then(ratio),
                FANOUT_10_MIN,
            )
            .to_string(),
        );
    }
    if let Some(j) = by("json_signed") {
        // Issue 21: open loop at half json_signed's own events/s, against
        // the ceiling's p99 (measured at half the ceiling's events/s).
        checks.push(
            verdict::p99_within(
                "json_signed p99 at half its own events/s ≤ ceiling p99 + 5 ms",
                ("json_signed", j.own.as_ref().map(Latency::run).as_ref()),
                ("ceiling", rows[0].lat.as_ref().map(Latency::run).as_ref()),
                5.0,
            )
            .to_string(),
        );
        // Printed whatever happened: overloaded, refused or lost is MISSED.
        let (subject, ceiling) = (
            j.lat.as_ref().map(Latency::run),
            rows[0].lat.as_ref().map(Latency::run),
        );
        checks.push(
            verdict::p99_within(
                "json_signed p99 ≤ ceiling p99 + 5 ms",
                ("json_signed", subject.as_ref()),
                ("ceiling", ceiling.as_ref()),
                5.0,
            )
            .to_string(),
        );
    }
    if let Some(r) = by("routing_20") {
        let js = by("json_signed").and_then(Row::events_per_s);
        let x = r.events_per_s().zip(js).map(|(a, b)| a / b);
        println!(
            "routing_20: {} events/s = {} × json_signed ({} events/s)",
            fmt_opt(r.events_per_s(), 0),
            fmt_opt(x, 3),
            fmt_opt(js, 0),
        );
        checks.push(
            verdict::at_least(
                "routing_20 costs at most 10 % of json_signed's events/s (ratio ≥ 0.9)",
                "events/s ratio to json_signed",
                x,
                0.9,
            )
            .to_string(),
        );
    }
    for name in ["json_signed_pg", "json_signed_pg3"] {
        let Some(p) = by(name) else { continue };
        let sqlite = by("json_signed").and_then(Row::events_per_s);
        println!(
            "{name}: {} events/s = {} × ceiling, {} × the SQLite relay; p99 at {PG_RATE:.0} events/s {} ms; deliveries per instance {:?}; round trips per delivery {}",
            fmt_opt(p.events_per_s(), 0),
            fmt_opt(ratio(p), 3),
            fmt_opt(p.events_per_s().zip(sqlite).map(|(a, b)| a / b), 3),
            fmt_opt(p.at_fixed.as_ref().and_then(|l| l.p99), 2),
            p.per_instance,
            fmt_opt(p.round_trips, 2),
        );
    }
    if let Some(p) = by("json_signed_pg") {
        checks.push(
            verdict::at_least(
                "json_signed_pg ≥ 0.15 × ceiling",
                "events/s ratio to the ceiling",
                ratio(p),
                0.15,
            )
            .to_string(),
        );
        checks.push(
            verdict::p99_at_most(
                "json_signed_pg p99 at 200 events/s ≤ 50 ms",
                (
                    "json_signed_pg",
                    p.at_fixed.as_ref().map(Latency::run).as_ref(),
                ),
                PG_RATE,
                50.0,
            )
            .to_string(),
        );
        checks.push(
            verdict::at_most(
                "json_signed_pg database round trips per delivery ≤ 2",
                "round trips per delivery (polls and reads included)",
                p.round_trips,
                2.0,
            )
            .to_string(),
        );
    }
    if s.wants("backlog_100k") {
        // Met only with 100,000 events accepted and all of them delivered.
        let run = by("backlog_100k").map(|r| {
            let t = r.tput.clone().unwrap_or_default();
            BacklogRun {
                posted: s.backlog as u64,
                accepted: t.accepted,
                delivered: t.delivered,
                drained: t.drained,
                peak_rss_kib: r.peak_rss_kib,
            }
        });
        checks.push(
            verdict::backlog_rss(
                "backlog peak RSS ≤ 150 MiB (100,000 events, drained)",
                run.as_ref(),
                150.0,
            )
            .to_string(),
        );
    }
    for c in &checks {
        println!("target: {c}");
    }
    // Issue 21's targets against what the least durable relay reaches.
    for (floor, scenario, target) in [
        ("durable_floor", "json_signed", JSON_SIGNED_MIN),
        ("durable_floor_10", "fanout_10", FANOUT_10_MIN),
    ] {
        let Some(f) = by(floor).and_then(ratio) else {
            continue;
        };
        let of_floor = by(scenario)
            .and_then(ratio)
            .map_or("not run".into(), |r| format!("{:.2}", r / f));
        println!(
            "bound: {floor} {f:.3} × ceiling; {scenario} reaches {of_floor} of it, its target ({target} × ceiling) {:.2}",
            target / f
        );
    }
    if stray > 0 {
        println!(
            "({stray} requests reached the receiver outside their phase: tails of earlier phases)"
        );
    }
    println!("whole run: {:.0} s", took.as_secs_f64());

    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            let l = r.lat.as_ref();
            json!({
                "scenario": r.scenario,
                "events_per_s": r.events_per_s().map(|e| (e * 10.0).round() / 10.0),
                "p50_ms": l.and_then(|l| l.p50),
                "p99_ms": l.and_then(|l| l.p99),
                "p999_ms": l.and_then(|l| l.p999),
                "peak_rss_mib": r.peak_rss_kib.map(|k| (mib(k) * 10.0).round() / 10.0),
                "ratio_to_ceiling": ratio(r).map(|x| (x * 1000.0).round() / 1000.0),
                "drain_s": r.drain_s.map(|d| (d * 100.0).round() / 100.0),
                "rounds_events_per_s": r.rounds,
                "ingest_per_s": r.tput.as_ref().map(|t| t.ingest_per_s.round()),
                "cpu_us_per_event": r.tput.as_ref().and_then(|t| t.cpu_us_per_event).map(f64::round),
                "db_cpu_us_per_event": r.tput.as_ref().and_then(|t| t.db_cpu_us_per_event).map(f64::round),
                "cpu_over_bench_cpu": r.tput.as_ref().and_then(Throughput::cpu_over_bench).map(|x| (x * 100.0).round() / 100.0),
                "latency_rate_per_s": l.map(|l| l.rate.round()),
                "latency_cpu_us_per_event": l.and_then(|l| l.cpu_us_per_event).map(f64::round),
                "undelivered": l.map(|l| l.lost),
                "overloaded_after_s": l.and_then(|l| l.overloaded_after),
                "own_rate_per_s": r.own.as_ref().map(|o| o.rate.round()),
                "own_p50_ms": r.own.as_ref().and_then(|o| o.p50),
                "own_p99_ms": r.own.as_ref().and_then(|o| o.p99),
                "own_p999_ms": r.own.as_ref().and_then(|o| o.p999),
                "fixed_rate_p99_ms": r.at_fixed.as_ref().and_then(|l| l.p99),
                "deliveries_per_instance": r.per_instance,
                "round_trips_per_delivery": r.round_trips,
                "note": r.note,
            })
        })
        .collect();
    let dir = bench_dir();
    let path = dir.join("e2e.json");
    match std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&list).unwrap_or_default() + "\n",
        )
    }) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// `target/bench`: the table's JSON and the relays' shared plugin cache.
fn bench_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench")
}
