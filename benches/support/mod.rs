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
