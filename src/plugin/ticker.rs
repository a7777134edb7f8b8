//! The epoch ticker: the thread that advances the engine's epoch, so a
//! running plugin call checks its deadline and yields to the executor every
//! [`TICK`].
//!
//! It only ticks while plugin code may run. Every call holds a [`Running`]
//! guard; after [`IDLE_TICKS`] ticks with none held the thread parks (a relay
//! whose webhooks use no plugin, or an idle one, no longer wakes 500 times a
//! second), and the next guard wakes it.
//!
//! No call runs unticked: a guard counts itself in before it reads `parked`,
//! and the thread sets `parked` before it re-reads the count (both
//! `SeqCst`), so one of the two always sees the other.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

/// How often the epoch advances while plugin code may run.
pub const TICK: Duration = Duration::from_millis(2);
/// Idle ticks before the thread parks (100 ms).
const IDLE_TICKS: u32 = 50;
/// A parked thread still looks once a second whether the engine is gone.
const PARKED_CHECK: Duration = Duration::from_secs(1);

pub struct Ticker {
    in_flight: AtomicUsize,
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

/// Held for as long as a call may run guest code.
pub struct Running(Arc<Ticker>);

impl Ticker {
    /// Starts the thread; it ends once the engine is dropped.
    pub fn start(engine: &Engine) -> Arc<Ticker> {
        let ticker = Arc::new(Ticker {
            in_flight: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let weak = engine.weak();
        let t = Arc::clone(&ticker);
        if let Ok(handle) = std::thread::Builder::new()
            .name("relay-plugin-epoch".into())
            .spawn(move || run(&weak, &t))
        {
            let _ = ticker.thread.set(handle.thread().clone());
        }
        ticker
    }

    /// Counts a call in (waking the thread if it parked) until the guard drops.
    pub fn enter(self: &Arc<Ticker>) -> Running {
        self.in_flight.fetch_add(1, SeqCst);
        if self.parked.load(SeqCst)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
        Running(Arc::clone(self))
    }

    #[cfg(test)]
    fn is_parked(&self) -> bool {
        self.parked.load(SeqCst)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

fn run(engine: &EngineWeak, ticker: &Ticker) {
    let mut idle_ticks = 0u32;
    while let Some(engine) = engine.upgrade() {
        engine.increment_epoch();
        drop(engine);
        if ticker.in_flight.load(SeqCst) > 0 {
            idle_ticks = 0;
        } else {
            idle_ticks = idle_ticks.saturating_add(1);
        }
        if idle_ticks < IDLE_TICKS {
            std::thread::sleep(TICK);
            continue;
        }
        ticker.parked.store(true, SeqCst);
        if ticker.in_flight.load(SeqCst) == 0 {
            std::thread::park_timeout(PARKED_CHECK);
        }
        ticker.parked.store(false, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn parks_when_idle_and_ticks_again_while_a_call_runs() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let ticker = Ticker::start(&engine);
        wait_until("parked after idle ticks", || ticker.is_parked());

        let running = ticker.enter();
        wait_until("awake once a call is in", || !ticker.is_parked());
        // While the call runs the thread keeps ticking: it does not park.
        std::thread::sleep(TICK * (IDLE_TICKS + 20));
        assert!(!ticker.is_parked(), "parked while a call was running");
        drop(running);
        wait_until("parked again after the call", || ticker.is_parked());
    }
}
