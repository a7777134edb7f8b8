//! Routing and noise control as written in relay.yaml (DESIGN §17): the
//! `routing:` section (suppression rules, dedup, catch-all) and the
//! per-webhook `mute` and `digest` blocks.
//!
//! Owns: their shapes and the checks that need nothing but themselves (time
//! windows, weekday names, IANA zones, ranges), in `Deserialize` impls so a
//! bad value is reported with `file:line:col`. What they mean at run time
//! is `crate::route`'s. Plain data: imports no sibling module.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::matcher::Matcher;

/// `routing:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Events these rules select are stored and never delivered (decision
    /// `suppressed`, with the rule's name).
    #[serde(default)]
    pub suppress: Vec<SuppressRule>,
    /// One notification per templated key per window (issue 15, `digest`
    /// engineer).
    #[serde(default)]
    pub dedup: Option<DedupSpec>,
    /// The webhook (by name or id) for events no webhook wanted and for
    /// events whose every delivery ended failed or skipped (`digest`
    /// engineer).
    #[serde(default)]
    pub catch_all: Option<String>,
}

impl RoutingConfig {
    /// Checks across rules: names present and unique.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.suppress.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err((
                    format!("routing.suppress[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err((
                    format!("routing.suppress[{i}].name"),
                    format!("{:?} is used twice", r.name),
                ));
            }
        }
        Ok(())
    }
}

/// `routing.suppress[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressRule {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: Matcher,
}

/// `routing.dedup`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// A template over the event (`{{type}}:{{incident_id}}`).
    pub key: String,
    #[serde(deserialize_with = "window_s")]
    pub window_s: u64,
}

/// A webhook's `digest`: one delivery per group per window, or sooner at
/// `max_events`; events `immediate` selects bypass it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    #[serde(deserialize_with = "window_s")]
    pub window_s: u64,
    #[serde(default = "default_max_events", deserialize_with = "max_events")]
    pub max_events: u32,
    /// Data paths whose values make a group (none: one group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immediate: Option<Matcher>,
}

fn default_max_events() -> u32 {
    100
}

/// Longest window (a week), in seconds.
pub const MAX_WINDOW_S: u64 = 7 * 24 * 3600;
/// Most events one digest delivery carries.
pub const MAX_DIGEST_EVENTS: u32 = 10_000;

fn window_s<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if (1..=MAX_WINDOW_S).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "window_s: {v} is out of range (1–{MAX_WINDOW_S})"
        )))
    }
}

fn max_events<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=MAX_DIGEST_EVENTS).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "max_events: {v} is out of range (1–{MAX_DIGEST_EVENTS})"
        )))
    }
}

/// A webhook's `mute`: while a window is open its events are recorded as
/// `muted` and nothing is sent. Every day when `weekdays` is empty; all day
/// when `times` is empty. A window may cross midnight (`22:00-06:00`): it
/// belongs to the weekday it starts on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MuteSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<Weekday>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeWindow>,
    /// An IANA time zone (`Europe/Berlin`); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// A day of the week: `mon` … `sun` (or the full English name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weekday(pub jiff::civil::Weekday);

const WEEKDAYS: [(&str, &str, jiff::civil::Weekday); 7] = [
    ("mon", "monday", jiff::civil::Weekday::Monday),
    ("tue", "tuesday", jiff::civil::Weekday::Tuesday),
    ("wed", "wednesday", jiff::civil::Weekday::Wednesday),
    ("thu", "thursday", jiff::civil::Weekday::Thursday),
    ("fri", "friday", jiff::civil::Weekday::Friday),
    ("sat", "saturday", jiff::civil::Weekday::Saturday),
    ("sun", "sunday", jiff::civil::Weekday::Sunday),
];

impl Weekday {
    pub fn parse(s: &str) -> Result<Weekday, String> {
        WEEKDAYS
            .iter()
            .find(|(short, long, _)| s.eq_ignore_ascii_case(short) || s.eq_ignore_ascii_case(long))
            .map(|(_, _, d)| Weekday(*d))
            .ok_or_else(|| {
                format!("{s:?} is not a weekday; use mon, tue, wed, thu, fri, sat or sun")
            })
    }
    pub fn name(self) -> &'static str {
        WEEKDAYS
            .iter()
            .find(|(_, _, d)| *d == self.0)
            .map(|(s, _, _)| *s)
            .unwrap_or("mon")
    }
}

impl<'de> Deserialize<'de> for Weekday {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Weekday::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for Weekday {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// `HH:MM-HH:MM`, minutes of the day; `end <= start` crosses midnight
/// (`00:00-00:00` is the whole day). `24:00` may end a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_min: u16,
    pub end_min: u16,
}

impl TimeWindow {
    pub fn parse(s: &str) -> Result<TimeWindow, String> {
        let bad = || format!("{s:?} is not a time window such as \"22:00-06:30\" (HH:MM-HH:MM)");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str, end: bool| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            let ok = (h < 24 && m < 60) || (end && h == 24 && m == 0);
            ok.then_some(h * 60 + m)
        };
        Ok(TimeWindow {
            start_min: minutes(a, false).ok_or_else(bad)?,
            end_min: minutes(b, true).ok_or_else(bad)?,
        })
    }
}

impl<'de> Deserialize<'de> for TimeWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TimeWindow::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for TimeWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        s.serialize_str(&format!("{}-{}", hm(self.start_min), hm(self.end_min)))
    }
}

/// An IANA time zone, resolved at load (from the relay's own copy of the
/// time zone database when the system has none).
#[derive(Debug, Clone)]
pub struct Location {
    pub name: String,
    pub zone: jiff::tz::TimeZone,
}

impl Location {
    pub fn parse(name: &str) -> Result<Location, String> {
        jiff::tz::TimeZone::get(name)
            .map(|zone| Location {
                name: name.to_owned(),
                zone,
            })
            .map_err(|_| {
                format!(
                    "{name:?} is not an IANA time zone such as Europe/Berlin or America/New_York"
                )
            })
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Location::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_windows_parse_and_refuse_what_is_not_hh_mm() {
        assert_eq!(
            TimeWindow::parse("22:00-06:30"),
            Ok(TimeWindow {
                start_min: 22 * 60,
                end_min: 6 * 60 + 30
            })
        );
        assert_eq!(
            TimeWindow::parse("00:00-24:00").map(|w| w.end_min),
            Ok(1440)
        );
        for bad in [
            "7-9",
            "24:00-01:00",
            "09:60-10:00",
            "0900-1000",
            "09:00",
            "",
        ] {
            assert!(TimeWindow::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekdays_and_zones_are_checked_by_name() {
        assert_eq!(Weekday::parse("Sat").map(|d| d.name()), Ok("sat"));
        assert!(Weekday::parse("someday").is_err());
        assert!(Location::parse("Europe/Berlin").is_ok());
        let e = Location::parse("Mars/Olympus").unwrap_err();
        assert!(e.contains("not an IANA time zone"), "{e}");
    }
}
