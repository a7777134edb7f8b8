//! `cargo bench --bench ingest`: what reading a posted body costs the
//! relay per event, without HTTP or storage around it: `ingest::parse` (UTF-8
//! check, depth scan, the event's fields read, its `data` indexed) on the
//! e2e bench's ~1 KiB event, alone and in a batch of 100. Thread CPU time
//! per event, the median of `ROUNDS` rounds of `CALLS` calls.

mod support;

use std::hint::black_box;

use support::{event_json, median, thread_cpu_us};

const ROUNDS: usize = 7;
const CALLS: usize = 100_000;

/// µs of thread CPU per event to parse `body` (`events` events) `calls` times.
fn per_event(body: &[u8], events: usize, calls: usize) -> f64 {
    let start = thread_cpu_us();
    for _ in 0..calls {
        let parsed =
            relay::ingest::parse(black_box(body), None, 1000).expect("the bench's body parses");
        assert_eq!(parsed.len(), events);
        black_box(parsed);
    }
    (thread_cpu_us() - start) / (calls * events) as f64
}

fn main() {
    let single = event_json("p1-000000", 0);
    let batch = format!(
        "[{}]",
        (0..100)
            .map(|i| event_json(&format!("p1-{i:06}"), i))
            .collect::<Vec<_>>()
            .join(",")
    );
    let rounds = |body: &str, events: usize| {
        per_event(body.as_bytes(), events, CALLS / 10 / events.max(1));
        median(
            (0..ROUNDS)
                .map(|_| per_event(body.as_bytes(), events, CALLS / events))
                .collect(),
        )
    };
    println!(
        "ingest::parse, {}-byte event: {:.2} µs per event alone, {:.2} µs per event in a batch of 100 (thread CPU, median of {ROUNDS} rounds)",
        single.len(),
        rounds(&single, 1),
        rounds(&batch, 100)
    );
}
