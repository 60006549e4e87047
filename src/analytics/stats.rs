//! Figures over a period, read from the database: the deflection rate with
//! its confirmed and assumed parts, CSAT, queue wait and resolution time,
//! per time bucket, and answers per intent and per article.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use crate::store::StoreError;

/// Width of the time buckets of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    pub fn parse(s: &str) -> Result<Bucket, String> {
        match s {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            other => Err(format!("bucket must be hour or day, not {other:?}")),
        }
    }
}

/// Most buckets one report may have.
pub const MAX_BUCKETS: i64 = 2000;

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durations {
    pub count: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub mean_seconds: Option<f64>,
}

impl Durations {
    fn of(mut ms: Vec<i64>) -> Durations {
        if ms.is_empty() {
            return Durations::default();
        }
        ms.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
            ms[i] as f64 / 1000.0
        };
        Durations {
            count: ms.len() as u64,
            median_seconds: Some(rank(0.5)),
            p90_seconds: Some(rank(0.9)),
            mean_seconds: Some(ms.iter().sum::<i64>() as f64 / ms.len() as f64 / 1000.0),
        }
    }
}

/// Customer satisfaction from the 1-5 ratings given when conversations closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Csat {
    pub responses: u64,
    /// Mean rating.
    pub mean: Option<f64>,
    /// Share of ratings of 4 or 5 (the usual CSAT score).
    pub satisfied: Option<f64>,
}

/// The figures of a set of closed conversations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Deflected + escalated + unanswered: the conversations that count.
    pub conversations: u64,
    pub deflected: u64,
    /// Deflected, and the visitor marked an answer helpful.
    pub deflected_confirmed: u64,
    /// Deflected without such a mark.
    pub deflected_assumed: u64,
    pub escalated: u64,
    pub escalated_by_reason: BTreeMap<String, u64>,
    pub unanswered: u64,
    /// Closed without a question (greetings only): counted in none of the above.
    pub no_question: u64,
    /// deflected / conversations.
    pub deflection_rate: Option<f64>,
    /// deflected_confirmed / conversations.
    pub confirmed_resolution_rate: Option<f64>,
    pub csat: Csat,
    /// From queueing to an agent's first message, for escalated conversations.
    pub queue_wait: Durations,
    /// From the first message to closing.
    pub resolution_time: Durations,
}

/// One bucket of a series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Start of the bucket, milliseconds since the Unix epoch (UTC).
    pub start: i64,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Answers from one intent or article.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceCounts {
    /// "intent" or "article".
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub answered: u64,
    pub helpful: u64,
    pub not_helpful: u64,
}

/// A report over `[from, to)`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub from: i64,
    pub to: i64,
    pub bucket: Bucket,
    pub totals: Summary,
    pub series: Vec<Point>,
    pub intents: Vec<SourceCounts>,
    pub articles: Vec<SourceCounts>,
}

/// One closed conversation, as the figures need it.
struct Closed {
    closed_at: i64,
    outcome: String,
    reason: Option<String>,
    confirmed: bool,
    rating: Option<i64>,
    resolution_ms: i64,
    wait_ms: Option<i64>,
}

#[derive(Default)]
struct Tally {
    summary: Summary,
    ratings: Vec<i64>,
    waits: Vec<i64>,
    resolutions: Vec<i64>,
}

impl Tally {
    fn add(&mut self, c: &Closed) {
        let s = &mut self.summary;
        match c.outcome.as_str() {
            "deflected" => {
                s.deflected += 1;
                if c.confirmed {
                    s.deflected_confirmed += 1;
                } else {
                    s.deflected_assumed += 1;
                }
            }
            "escalated" => {
                s.escalated += 1;
                *s.escalated_by_reason
                    .entry(c.reason.clone().unwrap_or_else(|| "unknown".into()))
                    .or_default() += 1;
            }
            "unanswered" => s.unanswered += 1,
            _ => {
                s.no_question += 1;
                return;
            }
        }
        if let Some(r) = c.rating {
            self.ratings.push(r);
        }
        if let Some(w) = c.wait_ms {
            self.waits.push(w);
        }
        self.resolutions.push(c.resolution_ms);
    }

    fn finish(self) -> Summary {
        let mut s = self.summary;
        s.conversations = s.deflected + s.escalated + s.unanswered;
        let share = |n: u64| (s.conversations > 0).then(|| n as f64 / s.conversations as f64);
        s.deflection_rate = share(s.deflected);
        s.confirmed_resolution_rate = share(s.deflected_confirmed);
        let n = self.ratings.len();
        s.csat = Csat {
            responses: n as u64,
            mean: (n > 0).then(|| self.ratings.iter().sum::<i64>() as f64 / n as f64),
            satisfied: (n > 0)
                .then(|| self.ratings.iter().filter(|&&r| r >= 4).count() as f64 / n as f64),
        };
        s.queue_wait = Durations::of(self.waits);
        s.resolution_time = Durations::of(self.resolutions);
        s
    }
}

/// The report for conversations closed in `[from, to)`, in buckets aligned to UTC.
pub fn stats(c: &Connection, from: i64, to: i64, bucket: Bucket) -> Result<Stats, StoreError> {
    if to <= from {
        return Err(StoreError::Schema("`to` must be after `from`".into()));
    }
    let width = bucket.millis();
    let first = from.div_euclid(width) * width;
    let buckets = (to - first + width - 1) / width;
    if buckets > MAX_BUCKETS {
        return Err(StoreError::Schema(format!(
            "{buckets} buckets is too many (at most {MAX_BUCKETS}); use a shorter period or day buckets"
        )));
    }
    let mut stmt = c.prepare_cached(concat!(
        "SELECT c.closed_at, c.outcome, c.escalation_reason, c.rating, c.created_at, c.queued_at,
                EXISTS (SELECT 1 FROM feedback f WHERE f.conversation_id = c.id AND f.helpful = 1), (",
        crate::store::chain!(
            of "c.id",
            while "m.created_at >= c.queued_at",
            "SELECT MIN(m.created_at) FROM chain JOIN messages m ON m.seq = chain.seq
             WHERE m.role = 'agent' AND m.created_at >= c.queued_at"
        ),
        ")
         FROM conversations c
         WHERE c.closed_at >= ?1 AND c.closed_at < ?2 AND c.state = 'closed'",
    ))?;
    let rows = stmt.query_map([from, to], |r| {
        let closed_at: i64 = r.get(0)?;
        let created_at: i64 = r.get(4)?;
        let queued_at: Option<i64> = r.get(5)?;
        let first_agent: Option<i64> = r.get(7)?;
        Ok(Closed {
            closed_at,
            outcome: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            reason: r.get(2)?,
            rating: r.get(3)?,
            confirmed: r.get(6)?,
            resolution_ms: closed_at - created_at,
            wait_ms: queued_at.zip(first_agent).map(|(q, a)| a - q),
        })
    })?;
    let mut totals = Tally::default();
    let mut series: Vec<Tally> = (0..buckets).map(|_| Tally::default()).collect();
    for row in rows {
        let row = row?;
        totals.add(&row);
        let i = ((row.closed_at - first) / width) as usize;
        if let Some(t) = series.get_mut(i) {
            t.add(&row);
        }
    }
    let series = series
        .into_iter()
        .enumerate()
        .map(|(i, t)| Point {
            start: first + i as i64 * width,
            summary: t.finish(),
        })
        .collect();

    let mut by_source = c.prepare_cached(
        "SELECT k.source_type, k.source_id, MAX(k.source_json), COUNT(*),
                COALESCE(SUM(f.helpful = 1), 0), COALESCE(SUM(f.helpful = 0), 0)
         FROM decisions d JOIN decision_contents k ON k.id = d.content_id
         LEFT JOIN feedback f ON f.answer_id = d.answer_id
         WHERE d.rowid >= ?3 AND d.rowid < ?4
           AND k.kind = 'answer' AND k.source_id IS NOT NULL AND d.created_at >= ?1 AND d.created_at < ?2
         GROUP BY k.source_type, k.source_id
         ORDER BY COUNT(*) DESC, k.source_id",
    )?;
    let mut intents = Vec::new();
    let mut articles = Vec::new();
    let (rows_from, rows_to) = crate::store::decision_rowids(c, from, to)?;
    let rows = by_source.query_map([from, to, rows_from, rows_to], |r| {
        let json: Option<String> = r.get(2)?;
        let title = json
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            .and_then(|v| v.get("title").and_then(|t| t.as_str()).map(String::from));
        Ok(SourceCounts {
            kind: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            id: r.get(1)?,
            title,
            answered: r.get::<_, i64>(3)? as u64,
            helpful: r.get::<_, i64>(4)? as u64,
            not_helpful: r.get::<_, i64>(5)? as u64,
        })
    })?;
    for row in rows {
        let row = row?;
        if row.kind == "intent" {
            intents.push(row);
        } else {
            articles.push(row);
        }
    }
    Ok(Stats {
        from,
        to,
        bucket,
        totals: totals.finish(),
        series,
        intents,
        articles,
    })
}

/// Parses a point in time: RFC 3339 (`2026-11-25T10:00:00Z`), a date
/// (`2026-11-25`, midnight UTC), or milliseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        if let Ok(t) =
            jiff::tz::TimeZone::UTC.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        {
            return Ok(t.as_millisecond());
        }
    }
    Err(format!(
        "{s:?} is not a time: use 2026-11-25, 2026-11-25T10:00:00Z or milliseconds since 1970"
    ))
}

/// The series as CSV, one row per bucket, for spreadsheets.
pub fn csv(s: &Stats) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "bucket_start,conversations,deflected,deflected_confirmed,deflected_assumed,escalated,unanswered,no_question,deflection_rate,confirmed_resolution_rate,csat_responses,csat_mean,csat_satisfied,queue_wait_median_seconds,resolution_time_median_seconds\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    for p in &s.series {
        let start = jiff::Timestamp::from_millisecond(p.start)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let m = &p.summary;
        let _ = writeln!(
            out,
            "{start},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            m.conversations,
            m.deflected,
            m.deflected_confirmed,
            m.deflected_assumed,
            m.escalated,
            m.unanswered,
            m.no_question,
            opt(m.deflection_rate),
            opt(m.confirmed_resolution_rate),
            m.csat.responses,
            opt(m.csat.mean),
            opt(m.csat.satisfied),
            opt(m.queue_wait.median_seconds),
            opt(m.resolution_time.median_seconds),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_nearest_rank() {
        let d = Durations::of(vec![4000, 1000, 3000, 2000]);
        assert_eq!(d.count, 4);
        assert_eq!(d.median_seconds, Some(2.0));
        assert_eq!(d.p90_seconds, Some(4.0));
        assert_eq!(d.mean_seconds, Some(2.5));
        assert_eq!(Durations::of(vec![]), Durations::default());
    }

    #[test]
    fn times_parse_in_three_forms() {
        assert_eq!(parse_time("1000").unwrap(), 1000);
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_time("yesterday").is_err());
    }
}
