//! The reporting API behind `/admin`: figures and content gaps as JSON (and
//! CSV), for agents with the admin role, who send their token as
//! `Authorization: Bearer TOKEN`.

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::agent::{check_token, SignIn};
use super::App;
use crate::analytics::{self, Bucket, Stats};

/// Longest period one report may cover.
const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize)]
pub(super) struct Period {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
    limit: Option<usize>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Lets admins through; anyone else gets 401, 403 or 429.
async fn authorize(
    app: &App,
    headers: &HeaderMap,
    peer: super::guard::Peer,
) -> Result<String, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256);
    let Some(token) = token else {
        return Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(
                serde_json::json!({"error": "send an admin token as Authorization: Bearer TOKEN"}),
            ),
        )
            .into_response());
    };
    match check_token(app, peer.addr.ip(), token).await {
        SignIn::Agent(name, true) => Ok(name),
        SignIn::Agent(name, false) => Err(error(
            StatusCode::FORBIDDEN,
            format!("{name} is not an admin; add one with `frontdesk agent add NAME --admin`"),
        )),
        SignIn::Bad => Err(error(StatusCode::UNAUTHORIZED, "that token is not valid")),
        SignIn::Refused => Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins from this address; try again in 10 minutes",
        )),
        SignIn::Unavailable => Err(error(StatusCode::SERVICE_UNAVAILABLE, "try again")),
    }
}

/// `[from, to)` from the query: `to` defaults to now, `from` to `days` before it.
fn range(p: &Period, days: i64) -> Result<(i64, i64), String> {
    let to = match &p.to {
        Some(t) => analytics::parse_time(t)?,
        None => crate::store::now_ms(),
    };
    let from = match &p.from {
        Some(f) => analytics::parse_time(f)?,
        None => to - days * 86_400_000,
    };
    if to <= from {
        return Err("`to` must be after `from`".into());
    }
    if to - from > MAX_DAYS * 86_400_000 {
        return Err(format!("a report covers at most {MAX_DAYS} days"));
    }
    Ok((from, to))
}

async fn load_stats(app: &App, p: &Period) -> Result<Stats, Response> {
    let (from, to) = range(p, 7).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let bucket = match p.bucket.as_deref() {
        None => Bucket::Day,
        Some(b) => Bucket::parse(b).map_err(|e| error(StatusCode::BAD_REQUEST, e))?,
    };
    app.inner
        .reader
        .read(move |c| analytics::stats(c, from, to, bucket))
        .await
        .map_err(|e| match e {
            // The request asked for something impossible (too many buckets).
            crate::store::StoreError::Schema(m) => error(StatusCode::BAD_REQUEST, m),
            e => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        })
}

/// `GET /api/stats?from=&to=&bucket=hour|day`.
pub(super) async fn stats(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<super::guard::Peer>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Response {
    if let Err(r) = authorize(&app, &headers, peer).await {
        return r;
    }
    match load_stats(&app, &p).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

/// `GET /api/stats.csv`: the series, one row per bucket.
pub(super) async fn stats_csv(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<super::guard::Peer>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Response {
    if let Err(r) = authorize(&app, &headers, peer).await {
        return r;
    }
    match load_stats(&app, &p).await {
        Ok(s) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"frontdesk-stats.csv\"",
                ),
            ],
            analytics::stats::csv(&s),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// `GET /api/gaps?from=&to=&limit=`: content gaps, largest first (30 days by default).
pub(super) async fn gaps(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<super::guard::Peer>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Response {
    if let Err(r) = authorize(&app, &headers, peer).await {
        return r;
    }
    let (from, to) = match range(&p, 30) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let questions = match app
        .inner
        .reader
        .read(move |c| analytics::questions(c, from, to))
        .await
    {
        Ok(q) => q,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let content = app.content();
    let gaps =
        tokio::task::spawn_blocking(move || analytics::group(&questions, Some(&content), limit))
            .await
            .unwrap_or_default();
    let engine = &app.config().engine;
    Json(serde_json::json!({
        "from": from,
        "to": to,
        // What a nearest article's confidence would have needed.
        "thresholds": { "answer": engine.answer_threshold, "clarify": engine.clarify_threshold },
        "gaps": gaps,
    }))
    .into_response()
}
