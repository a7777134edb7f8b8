//! What the benches share (each bench includes this with `mod support;`; a
//! bench that needs only part of it leaves the rest unused).
#![allow(dead_code)]

use std::path::Path;

pub mod verdict;

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// User + system CPU seconds from a `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat` file.
pub fn stat_cpu_secs(stat: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // Fields 14 and 15 of proc(5), counted after "pid (comm) ": the name
    // may hold spaces and parentheses, so count from the last `)`.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// CPU seconds of a PostgreSQL server: the postmaster, its live children
/// (backends, WAL writer, checkpointer, ...) and the children it reaped.
pub fn db_cpu_secs(postmaster: u32) -> Option<f64> {
    let own = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).ok()?;
    let rest = &own[own.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime (proc(5) fields 14–17).
    let ticks: u64 = f
        .get(11..15)?
        .iter()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    let mut secs = ticks as f64 / 100.0;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let parent = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(postmaster) {
            secs += stat_cpu_secs(Path::new(&format!("/proc/{pid}/stat"))).unwrap_or(0.0);
        }
    }
    Some(secs)
}

/// The calling thread's CPU time so far, in µs.
pub fn thread_cpu_us() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

/// Tenants the events are spread over (`tenant_name` is
/// "Acme Corporation <seq % TENANTS>"); `routing_20`'s digests group by it.
pub const TENANTS: usize = 10;

/// A ~1 KiB event (the `data` of a typical scanner finding), the `seq`th
/// of its phase: what the e2e bench posts and the ingest bench reads.
pub fn event_json(id: &str, seq: usize) -> String {
    let tenant = seq % TENANTS;
    format!(
        r#"{{"type":"critical_finding","id":"{id}","time":"2026-11-22T10:00:00Z","data":{{"title":"SQL injection in /login allows authentication bypass","severity":"critical","tenant_name":"Acme Corporation {tenant}","description":"The login form concatenates the username into a SQL query. An attacker can log in as any user by sending a crafted username. Parameterise the query and review the other endpoints that build SQL by hand; the scanner found the same pattern in the password reset form and in the admin search page, both reachable without authentication.","asset":"https://app.acme.example/login","category":"Injection","rule":"sqli-login-001","host":"web-01.acme.internal","user":"scanner@acme.example","cvss":9.8,"cwe":"CWE-89","url":"https://findings.acme.example/f/12345","status":"open","source":"dast","first_seen":"2026-11-22T10:00:00Z","engagement":"2026-Q4 external perimeter","tags":["owasp-a03","pci","internet-facing"],"evidence":"POST /login username=admin'--&password=x -> 302 /dashboard (session issued)"}}}}"#
    )
}
