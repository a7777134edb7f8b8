//! Mute windows (DESIGN §17): whether a webhook's `mute` covers a moment.
//!
//! Owns: the calendar arithmetic, done by jiff in the window's IANA zone
//! (daylight-saving changes included): the moment's local weekday and
//! minute of the day. A window crossing midnight (`22:00-06:00`) belongs to
//! the weekday it starts on, so its early hours are checked against the
//! day before.

use jiff::Timestamp;
use jiff::civil::Weekday;

use crate::config::MuteSpec;

/// Whether `spec` mutes at `now_ms` (ms since the epoch).
pub fn is_muted(spec: &MuteSpec, now_ms: i64) -> bool {
    let Ok(ts) = Timestamp::from_millisecond(now_ms) else {
        return false;
    };
    let zone = spec
        .location
        .as_ref()
        .map(|l| l.zone.clone())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let local = ts.to_zoned(zone);
    let day = local.weekday();
    let minute = local.hour() as u16 * 60 + local.minute() as u16;
    let day_ok = |d: Weekday| spec.weekdays.is_empty() || spec.weekdays.iter().any(|w| w.0 == d);
    if spec.times.is_empty() {
        return day_ok(day);
    }
    spec.times.iter().any(|w| {
        if w.start_min < w.end_min {
            day_ok(day) && (w.start_min..w.end_min).contains(&minute)
        } else {
            // Crosses midnight (or is the whole day when start == end).
            (minute >= w.start_min && day_ok(day)) || (minute < w.end_min && day_ok(day.previous()))
        }
    })
}

/// The window as one line for explanations: `sat,sun 00:00-07:00
/// Europe/Berlin`.
pub fn describe(spec: &MuteSpec) -> String {
    let days = if spec.weekdays.is_empty() {
        "every day".to_owned()
    } else {
        spec.weekdays
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(",")
    };
    let times = serde_json::to_value(&spec.times)
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "all day".into());
    let zone = spec
        .location
        .as_ref()
        .map(|l| l.name.as_str())
        .unwrap_or("UTC");
    format!("mute {days} {times} {zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> MuteSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// ms of a civil time in a zone.
    fn at(civil: &str, zone: &str) -> i64 {
        let dt: jiff::civil::DateTime = civil.parse().unwrap();
        dt.in_tz(zone).unwrap().timestamp().as_millisecond()
    }

    #[test]
    fn a_window_applies_in_its_own_zone() {
        let s = spec("times: ['09:00-17:00']\nlocation: America/New_York\n");
        assert!(is_muted(&s, at("2026-03-02T10:00", "America/New_York")));
        // 10:00 in Berlin is 04:00 in New York.
        assert!(!is_muted(&s, at("2026-03-02T10:00", "Europe/Berlin")));
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_the_day_it_starts() {
        let s = spec("weekdays: [fri]\ntimes: ['22:00-06:00']\nlocation: Europe/Berlin\n");
        // 2026-03-06 is a Friday.
        assert!(is_muted(&s, at("2026-03-06T23:30", "Europe/Berlin")));
        assert!(
            is_muted(&s, at("2026-03-07T05:59", "Europe/Berlin")),
            "Saturday early hours"
        );
        assert!(!is_muted(&s, at("2026-03-07T06:00", "Europe/Berlin")));
        assert!(
            !is_muted(&s, at("2026-03-07T23:30", "Europe/Berlin")),
            "Saturday night"
        );
        assert!(
            !is_muted(&s, at("2026-03-06T05:00", "Europe/Berlin")),
            "Friday early = Thursday's"
        );
    }

    #[test]
    fn weekdays_alone_mute_whole_days_and_times_alone_every_day() {
        let weekend = spec("weekdays: [sat, sun]\n");
        assert!(is_muted(&weekend, at("2026-03-08T12:00", "UTC")));
        assert!(!is_muted(&weekend, at("2026-03-09T12:00", "UTC")));
        let nights = spec("times: ['00:00-07:00']\n");
        assert!(is_muted(&nights, at("2026-03-09T06:59", "UTC")));
        assert!(!is_muted(&nights, at("2026-03-09T07:00", "UTC")));
        assert_eq!(describe(&nights), "mute every day 00:00-07:00 UTC");
    }
}
