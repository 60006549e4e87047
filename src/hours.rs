//! Business hours: a time zone and, per weekday, the ranges when people take
//! conversations. Without hours the desk is open around the clock.

use std::collections::BTreeMap;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Validated weekly hours in a time zone.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    /// Minutes since midnight, `[start, end)`, per weekday (Monday = 0).
    week: Option<[Vec<(u16, u16)>; 7]>,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

impl Hours {
    /// Open around the clock.
    pub fn always() -> Hours {
        Hours {
            tz: TimeZone::UTC,
            week: None,
        }
    }

    /// Parses a time zone name ("Europe/Berlin", "UTC") and a map from day
    /// ("mon".."sun") to ranges ("09:00-17:00, 18:00-20:00"). Days not named
    /// are closed; an empty map means open around the clock.
    pub fn parse(timezone: &str, days: &BTreeMap<String, String>) -> Result<Hours, String> {
        let tz =
            TimeZone::get(timezone).map_err(|e| format!("unknown time zone {timezone:?}: {e}"))?;
        if days.is_empty() {
            return Ok(Hours { tz, week: None });
        }
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for (day, ranges) in days {
            let Some(i) = DAYS.iter().position(|(name, _)| name == day) else {
                return Err(format!(
                    "unknown day {day:?}; use mon, tue, wed, thu, fri, sat, sun"
                ));
            };
            for range in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let (start, end) = range
                    .split_once('-')
                    .ok_or_else(|| format!("{day}: {range:?} is not a range like 09:00-17:00"))?;
                let (start, end) = (minutes(start.trim())?, minutes(end.trim())?);
                if start >= end {
                    return Err(format!("{day}: {range:?} ends before it starts"));
                }
                week[i].push((start, end));
            }
        }
        Ok(Hours {
            tz,
            week: Some(week),
        })
    }

    /// Whether the desk is open at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let Some(week) = &self.week else {
            return true;
        };
        let local = self.tz.to_datetime(at);
        let day = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        week[day].iter().any(|&(s, e)| s <= minute && minute < e)
    }

    /// Whether the desk is open now.
    pub fn open_now(&self) -> bool {
        self.is_open(Timestamp::now())
    }

    /// The hours as people read them: "mon 09:00-17:00; tue ..." in the time zone.
    pub fn describe(&self) -> String {
        let Some(week) = &self.week else {
            return "around the clock".into();
        };
        let days: Vec<String> = DAYS
            .iter()
            .zip(week)
            .filter(|(_, ranges)| !ranges.is_empty())
            .map(|((name, _), ranges)| {
                let r: Vec<String> = ranges
                    .iter()
                    .map(|&(s, e)| format!("{}-{}", clock(s), clock(e)))
                    .collect();
                format!("{name} {}", r.join(", "))
            })
            .collect();
        let zone = self.tz.iana_name().unwrap_or("UTC");
        format!("{} ({zone})", days.join("; "))
    }
}

fn minutes(hhmm: &str) -> Result<u16, String> {
    let bad = || format!("{hhmm:?} is not a time like 09:30");
    let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(tz: &str, days: &[(&str, &str)]) -> Result<Hours, String> {
        let map = days
            .iter()
            .map(|(d, r)| (d.to_string(), r.to_string()))
            .collect();
        Hours::parse(tz, &map)
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn open_within_ranges_in_the_time_zone() {
        let h = hours("Europe/Berlin", &[("wed", "09:00-12:00, 13:00-17:00")]).unwrap();
        // 2026-11-25 is a Wednesday; Berlin is UTC+1 in November.
        assert!(h.is_open(at("2026-11-25T08:00:00Z")));
        assert!(!h.is_open(at("2026-11-25T07:59:00Z")));
        assert!(!h.is_open(at("2026-11-25T11:30:00Z")));
        assert!(h.is_open(at("2026-11-25T15:59:00Z")));
        assert!(!h.is_open(at("2026-11-25T16:00:00Z")));
        assert!(!h.is_open(at("2026-11-26T10:00:00Z")), "thursday is closed");
    }

    #[test]
    fn no_hours_means_always_open() {
        let h = hours("UTC", &[]).unwrap();
        assert!(h.is_open(at("2026-11-29T03:00:00Z")));
        assert_eq!(h.describe(), "around the clock");
    }

    #[test]
    fn bad_hours_are_refused_with_the_reason() {
        assert!(hours("Mars/Olympus", &[])
            .unwrap_err()
            .contains("time zone"));
        assert!(hours("UTC", &[("monday", "09:00-17:00")])
            .unwrap_err()
            .contains("unknown day"));
        assert!(hours("UTC", &[("mon", "17:00-09:00")])
            .unwrap_err()
            .contains("ends before"));
        assert!(hours("UTC", &[("mon", "9-5")])
            .unwrap_err()
            .contains("09:30"));
        let h = hours("UTC", &[("mon", "00:00-24:00")]).unwrap();
        assert_eq!(h.describe(), "mon 00:00-24:00 (UTC)");
    }
}
