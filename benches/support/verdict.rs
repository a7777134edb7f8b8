//! The e2e bench's verdicts on issue 7's latency and backlog targets, as
//! pure functions of the measured figures. A verdict is met only when the
//! figure it judges was measured under the conditions the target names;
//! otherwise it is MISSED with the reason, never left out. A bench with
//! `harness = false` runs no `#[test]`s, so `tests/bench_verdicts.rs`
//! includes this file to run the tests below.

use std::fmt;

/// The backlog target's size: events accepted while the receiver is down.
pub const BACKLOG_EVENTS: u64 = 100_000;

/// One target's verdict, printed as one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub target: String,
    /// The figure compared, or why there is none.
    pub detail: String,
    pub met: bool,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.met {
            write!(f, "{}: {} (met)", self.target, self.detail)
        } else {
            write!(f, "{}: MISSED — {}", self.target, self.detail)
        }
    }
}

fn check(target: &str, met: bool, detail: String) -> Check {
    Check {
        target: target.to_owned(),
        detail,
        met,
    }
}

/// What an open-loop latency phase measured.
#[derive(Debug, Clone, Default)]
pub struct LatencyRun {
    pub rate: f64,
    /// Seconds into the phase when the load was stopped as overloaded.
    pub overloaded_after_s: Option<f64>,
    pub accepted: u64,
    /// Requests not answered 2xx: their events have no latency at all.
    pub refused: u64,
    /// Accepted events that never arrived.
    pub undelivered: u64,
    pub p99_ms: Option<f64>,
}

/// Why `run`'s p99 cannot be judged, if it cannot: not run, overloaded,
/// any request refused (a p99 over the accepted ones only would hide
/// them), any accepted event undelivered, or no percentile.
fn p99_of(name: &str, run: Option<&LatencyRun>) -> Result<f64, String> {
    let Some(r) = run else {
        return Err(format!("{name}: no latency phase was run"));
    };
    if let Some(after) = r.overloaded_after_s {
        return Err(format!(
            "{name} overloaded at {:.0} events/s (fell behind after {after:.1} s); no p99",
            r.rate
        ));
    }
    if r.refused > 0 {
        return Err(format!(
            "{name} refused {} of {} requests at {:.0} events/s; a p99 needs every request accepted",
            r.refused,
            r.refused + r.accepted,
            r.rate
        ));
    }
    if r.undelivered > 0 {
        return Err(format!(
            "{name}: {} of {} accepted events never arrived",
            r.undelivered, r.accepted
        ));
    }
    r.p99_ms
        .ok_or_else(|| format!("{name}: no p99 (no event delivered)"))
}

/// `subject`'s p99 ≤ `ceiling`'s p99 + `slack_ms`, both measured at the
/// same open-loop rate with nothing refused, overloaded or lost.
pub fn p99_within(
    target: &str,
    subject: (&str, Option<&LatencyRun>),
    ceiling: (&str, Option<&LatencyRun>),
    slack_ms: f64,
) -> Check {
    let (a, b) = match (p99_of(subject.0, subject.1), p99_of(ceiling.0, ceiling.1)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => return check(target, false, why),
    };
    check(
        target,
        a <= b + slack_ms,
        format!("{a:.2} vs {:.2} ms", b + slack_ms),
    )
}

/// `run`'s p99 ≤ `limit_ms`, measured open loop at `rate` events/s with
/// nothing refused, overloaded or lost.
pub fn p99_at_most(
    target: &str,
    subject: (&str, Option<&LatencyRun>),
    rate: f64,
    limit_ms: f64,
) -> Check {
    if let Some(r) = subject.1
        && (r.rate - rate).abs() > 0.5
    {
        return check(
            target,
            false,
            format!(
                "{} was measured at {:.0} events/s, not {rate:.0}",
                subject.0, r.rate
            ),
        );
    }
    match p99_of(subject.0, subject.1) {
        Ok(p99) => check(target, p99 <= limit_ms, format!("{p99:.2} ms")),
        Err(why) => check(target, false, why),
    }
}

/// A measured figure ≥ `min`; MISSED when it was not measured.
pub fn at_least(target: &str, what: &str, value: Option<f64>, min: f64) -> Check {
    match value.filter(|v| v.is_finite()) {
        Some(v) => check(target, v >= min, format!("{v:.3}")),
        None => check(target, false, format!("no {what} was measured")),
    }
}

/// A measured figure ≤ `max`; MISSED when it was not measured.
pub fn at_most(target: &str, what: &str, value: Option<f64>, max: f64) -> Check {
    match value.filter(|v| v.is_finite()) {
        Some(v) => check(target, v <= max, format!("{v:.2}")),
        None => check(target, false, format!("no {what} was measured")),
    }
}

/// What the backlog scenario measured.
#[derive(Debug, Clone, Default)]
pub struct BacklogRun {
    /// Events the scenario was asked to post (`E2E_BACKLOG`).
    pub posted: u64,
    pub accepted: u64,
    pub delivered: u64,
    pub drained: bool,
    pub peak_rss_kib: Option<u64>,
}

/// Peak RSS ≤ `limit_mib` while holding and then draining a backlog of
/// [`BACKLOG_EVENTS`]: only when that many were accepted and all of them
/// delivered.
pub fn backlog_rss(target: &str, run: Option<&BacklogRun>, limit_mib: f64) -> Check {
    let Some(r) = run else {
        return check(target, false, "the backlog scenario was not run".into());
    };
    if r.accepted < BACKLOG_EVENTS {
        return check(
            target,
            false,
            format!(
                "{} of {BACKLOG_EVENTS} events accepted ({} posted); the target is for {BACKLOG_EVENTS}",
                r.accepted, r.posted
            ),
        );
    }
    if !r.drained || r.delivered < r.accepted {
        return check(
            target,
            false,
            format!(
                "{} of {} accepted events delivered before the drain limit",
                r.delivered, r.accepted
            ),
        );
    }
    let Some(kib) = r.peak_rss_kib else {
        return check(target, false, "peak RSS was not read".into());
    };
    let mib = kib as f64 / 1024.0;
    check(target, mib <= limit_mib, format!("{mib:.1} MiB"))
}

/// Issue 16's target for a new plugin: its warm call costs at most
/// `factor` times the slack formatter's warm call, measured in the same
/// run. `us` is the plugin's most expensive call (a formatter's `format`,
/// a destination's `build` or `classify`); `None` when it was not measured.
pub fn plugin_cost(plugin: &str, us: Option<f64>, slack_us: f64, factor: f64) -> Check {
    let target = format!("{plugin} warm call <= {factor}x slack format");
    let Some(us) = us else {
        return check(&target, false, "not measured".into());
    };
    if slack_us.is_nan() || slack_us <= 0.0 {
        return check(&target, false, "no slack figure to compare with".into());
    }
    check(
        &target,
        us <= factor * slack_us,
        format!("{us:.2} vs {slack_us:.2} µs ({:.2}x)", us / slack_us),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_rate_p99_is_judged_only_at_that_rate_and_a_missing_figure_is_missed() {
        let at = |rate: f64, p99: f64| LatencyRun {
            rate,
            accepted: 600,
            p99_ms: Some(p99),
            ..LatencyRun::default()
        };
        assert!(p99_at_most("t", ("pg", Some(&at(200.0, 12.0))), 200.0, 50.0).met);
        let slow = p99_at_most("t", ("pg", Some(&at(200.0, 51.0))), 200.0, 50.0);
        assert!(!slow.met && slow.to_string().contains("MISSED"), "{slow}");
        let elsewhere = p99_at_most("t", ("pg", Some(&at(100.0, 12.0))), 200.0, 50.0);
        assert!(
            !elsewhere.met && elsewhere.detail.contains("100"),
            "{elsewhere}"
        );
        assert!(!p99_at_most("t", ("pg", None), 200.0, 50.0).met);
        assert!(at_least("t", "ratio", Some(0.2), 0.15).met);
        assert!(!at_least("t", "ratio", Some(0.1), 0.15).met);
        let none = at_least("t", "ratio", None, 0.15);
        assert!(!none.met && none.detail.contains("no ratio"), "{none}");
        assert!(at_most("t", "trips", Some(2.0), 2.0).met);
        assert!(!at_most("t", "trips", Some(2.01), 2.0).met);
        assert!(!at_most("t", "trips", Some(f64::NAN), 2.0).met);
    }

    fn clean(p99_ms: f64) -> LatencyRun {
        LatencyRun {
            rate: 5000.0,
            accepted: 15_000,
            p99_ms: Some(p99_ms),
            ..LatencyRun::default()
        }
    }

    fn p99(subject: &LatencyRun, ceiling: &LatencyRun) -> Check {
        p99_within(
            "p99",
            ("json_signed", Some(subject)),
            ("ceiling", Some(ceiling)),
            5.0,
        )
    }

    #[test]
    fn a_p99_within_the_slack_of_the_ceiling_is_met_and_over_it_missed() {
        let c = p99(&clean(7.0), &clean(2.0));
        assert!(c.met, "{c}");
        assert_eq!(c.to_string(), "p99: 7.00 vs 7.00 ms (met)");
        let c = p99(&clean(7.01), &clean(2.0));
        assert!(!c.met, "{c}");
        assert_eq!(c.to_string(), "p99: MISSED — 7.01 vs 7.00 ms");
    }

    #[test]
    fn an_overloaded_subject_or_ceiling_is_missed_with_the_reason() {
        let over = LatencyRun {
            overloaded_after_s: Some(2.5),
            p99_ms: None,
            ..clean(1.0)
        };
        let c = p99(&over, &clean(2.0));
        assert!(!c.met);
        assert_eq!(
            c.to_string(),
            "p99: MISSED — json_signed overloaded at 5000 events/s (fell behind after 2.5 s); no p99"
        );
        let c = p99(&clean(2.0), &over);
        assert!(!c.met);
        assert!(c.detail.starts_with("ceiling overloaded"), "{c}");
        let c = p99_within(
            "p99",
            ("json_signed", None),
            ("ceiling", Some(&clean(1.0))),
            5.0,
        );
        assert!(!c.met);
        assert_eq!(c.detail, "json_signed: no latency phase was run");
    }

    #[test]
    fn one_refused_request_misses_the_p99_however_fast_the_accepted_ones_were() {
        let refused = LatencyRun {
            refused: 1,
            ..clean(0.5)
        };
        let c = p99(&refused, &clean(2.0));
        assert!(!c.met, "{c}");
        assert_eq!(
            c.detail,
            "json_signed refused 1 of 15001 requests at 5000 events/s; a p99 needs every request accepted"
        );
    }

    #[test]
    fn an_undelivered_event_or_a_missing_percentile_misses_the_p99() {
        let lost = LatencyRun {
            undelivered: 3,
            ..clean(0.5)
        };
        let c = p99(&lost, &clean(2.0));
        assert!(!c.met);
        assert_eq!(
            c.detail,
            "json_signed: 3 of 15000 accepted events never arrived"
        );
        let none = LatencyRun {
            p99_ms: None,
            ..clean(0.5)
        };
        assert!(!p99(&none, &clean(2.0)).met);
    }

    fn drained(accepted: u64, rss_mib: u64) -> BacklogRun {
        BacklogRun {
            posted: accepted,
            accepted,
            delivered: accepted,
            drained: true,
            peak_rss_kib: Some(rss_mib * 1024),
        }
    }

    #[test]
    fn the_backlog_rss_is_met_only_for_100k_accepted_and_drained() {
        let c = backlog_rss("rss", Some(&drained(100_000, 150)), 150.0);
        assert!(c.met, "{c}");
        assert_eq!(c.to_string(), "rss: 150.0 MiB (met)");
        let c = backlog_rss("rss", Some(&drained(100_000, 151)), 150.0);
        assert_eq!(c.to_string(), "rss: MISSED — 151.0 MiB");

        // Few events accepted: a small RSS proves nothing.
        let c = backlog_rss("rss", Some(&drained(10_000, 40)), 150.0);
        assert!(!c.met, "{c}");
        assert_eq!(
            c.detail,
            "10000 of 100000 events accepted (10000 posted); the target is for 100000"
        );
        let refused = BacklogRun {
            posted: 100_000,
            ..drained(99_500, 40)
        };
        let c = backlog_rss("rss", Some(&refused), 150.0);
        assert!(!c.met && c.detail.starts_with("99500 of 100000"), "{c}");

        // Not drained: RSS at the end is not the peak of the whole backlog.
        let stuck = BacklogRun {
            delivered: 60_000,
            drained: false,
            ..drained(100_000, 40)
        };
        let c = backlog_rss("rss", Some(&stuck), 150.0);
        assert!(!c.met);
        assert_eq!(
            c.detail,
            "60000 of 100000 accepted events delivered before the drain limit"
        );

        let c = backlog_rss("rss", None, 150.0);
        assert!(!c.met);
        let unread = BacklogRun {
            peak_rss_kib: None,
            ..drained(100_000, 0)
        };
        assert!(!backlog_rss("rss", Some(&unread), 150.0).met);
    }

    #[test]
    fn a_plugin_within_twice_the_slack_call_is_met_and_over_it_missed() {
        let c = plugin_cost("discord", Some(30.0), 15.0, 2.0);
        assert!(c.met, "{c}");
        assert_eq!(
            c.to_string(),
            "discord warm call <= 2x slack format: 30.00 vs 15.00 µs (2.00x) (met)"
        );
        let c = plugin_cost("discord", Some(30.1), 15.0, 2.0);
        assert!(!c.met, "{c}");
        assert!(c.to_string().contains("MISSED — 30.10 vs 15.00 µs"), "{c}");
        assert!(!plugin_cost("x", None, 15.0, 2.0).met);
        assert!(!plugin_cost("x", Some(1.0), 0.0, 2.0).met);
    }
}
