//! A private PostgreSQL cluster for tests and benches: `initdb` in a temp
//! dir, `postgres` on a free loopback port, one fresh database per test.
//!
//! - As root (CI), the cluster runs as the `postgres` user (initdb refuses
//!   root) through `setpriv`, in a temp dir handed to that user.
//! - Every server process is spawned by one long-lived thread with
//!   `setpriv --pdeathsig INT`: when the test process ends, however it ends
//!   (a panic, SIGKILL), the kernel sends the postmaster SIGINT (fast
//!   shutdown). [`PgCluster`]'s `Drop` stops it too; a temp dir left by a
//!   killed run is removed by the next start (see [`sweep_stale`]).
//! - Every wait is bounded.
#![allow(dead_code)]

use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Prefix of every cluster's temp dir (under the system temp dir).
const DIR_PREFIX: &str = "relay-pg-";
/// The superuser `initdb` creates; tests connect as it (trust, loopback).
pub const PG_USER: &str = "relay";

/// Settings for a test cluster: durability off (a test database is thrown
/// away), which roughly halves a test's time in commits.
pub const FAST: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];
/// Durable settings (the defaults: every commit on disk), for the bench.
pub const DURABLE: &[&str] = &[];

/// Where the server binaries are: `PG_BIN`, else the newest
/// /usr/lib/postgresql/*/bin with `initdb`, else `initdb` on PATH.
pub fn pg_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("postgres").exists())
    })
}

/// uid/gid the cluster runs as when we are root: the `postgres` user.
fn run_as() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    if me != 0 {
        return None;
    }
    let out = Command::new("id").args(["-u", "postgres"]).output().ok()?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let out = Command::new("id").args(["-g", "postgres"]).output().ok()?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((uid, gid))
}

/// A command run as the cluster's user, tied to the spawner thread's life.
fn command(bin: &Path, program: &str, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new("setpriv");
    if let Some((uid, gid)) = user {
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups");
    }
    c.args(["--pdeathsig", "INT", "--"]).arg(bin.join(program));
    c
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns on one thread that lives as long as the process: the parent-death
/// signal fires when the *thread* that spawned a process ends.
fn spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("pg-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The process is exiting: park so that the children are
                // signalled only when the whole process goes.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply))
        .expect("spawner alive");
    answer.recv().expect("spawner answers")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes cluster dirs left by test processes that died (their
/// `harness.pid` is gone and so is their postmaster).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = e.path();
        let pid_of = |file: &str| -> Option<u32> {
            std::fs::read_to_string(dir.join(file))
                .ok()?
                .lines()
                .next()?
                .trim()
                .parse()
                .ok()
        };
        let harness = pid_of("harness.pid");
        let postmaster = pid_of("data/postmaster.pid");
        if harness.is_some_and(|p| !alive(p)) && !postmaster.is_some_and(alive) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// A running (or stopped) private cluster.
pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    settings: Vec<String>,
    server: Mutex<Option<Child>>,
    next_db: AtomicUsize,
}

impl PgCluster {
    /// The cluster shared by every test of this test binary (started on
    /// first use; stopped when the process ends).
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| PgCluster::start(FAST))
    }

    /// A cluster of its own (e.g. to stop and start it in a test).
    pub fn start(settings: &[&str]) -> PgCluster {
        sweep_stale();
        let bin = pg_bin().expect(
            "PostgreSQL server binaries (initdb, postgres) not found: run `bash .ci/install-test-deps` or set PG_BIN",
        );
        let user = run_as();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::write(dir.join("harness.pid"), std::process::id().to_string())
            .expect("write harness.pid");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown cluster dir");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod cluster dir");
        let started = Instant::now();
        let out = command(&bin, "initdb", user)
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = PgCluster {
            port: super::free_port(),
            dir,
            bin,
            user,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            server: Mutex::new(None),
            next_db: AtomicUsize::new(0),
        };
        cluster.start_server();
        eprintln!(
            "postgres cluster on 127.0.0.1:{} ready in {:?} ({})",
            cluster.port,
            started.elapsed(),
            cluster.dir.display()
        );
        cluster
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_server(&self) {
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        assert!(server.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .expect("postgres log");
        if let Some((uid, gid)) = self.user {
            let _ = std::os::unix::fs::chown(self.dir.join("postgres.log"), Some(uid), Some(gid));
        }
        let mut cmd = command(&self.bin, "postgres", self.user);
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
            ]);
        for s in &self.settings {
            cmd.args(["-c", s]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.try_clone().expect("log"));
        let mut child = spawn(cmd).expect("spawn postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.ready() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("postgres exited with {status}:\n{}", self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("postgres not ready within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        *server = Some(child);
    }

    /// The postmaster says `ready` in its pid file and the port answers.
    fn ready(&self) -> bool {
        let status =
            std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
        status.lines().nth(7).map(str::trim) == Some("ready")
            && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Stops the server (fast shutdown: clients are disconnected); the data
    /// stays for [`PgCluster::start_server`].
    pub fn stop_server(&self) {
        let Some(mut child) = self.server.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-s", "INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The postmaster's pid, while the server runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let status = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        status.lines().next()?.trim().parse().ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// A connection URL for `db` (no password: trust on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh_db(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls),
        )
        .await
        .expect("connect within 10 s")
        .expect("connect to the test cluster");
        let task = tokio::spawn(conn);
        tokio::time::timeout(
            Duration::from_secs(30),
            client.batch_execute(&format!("CREATE DATABASE {name}")),
        )
        .await
        .expect("CREATE DATABASE within 30 s")
        .expect("CREATE DATABASE");
        drop(client);
        let _ = task.await;
        self.url(&name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
