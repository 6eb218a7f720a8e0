//! The agent's HTTP interface (INTERFACE.md "HTTP"): a status page for the lab technician, probes
//! for supervisors, Prometheus metrics, the status as JSON, and the queue operations that
//! `labagent queue` needs while the agent runs (the agent holds the store's lock).
//!
//! # Routes
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/` | the status page (HTML, refreshes every 5 s) |
//! | GET | `/healthz` | 200 `ok` while the process serves requests |
//! | GET | `/readyz` | 200 `ready` once the store recovered and every listener is bound, else 503 |
//! | GET | `/metrics` | Prometheus text 0.0.4, names prefixed `labagent_` ([`metrics`]) |
//! | GET | `/api/status` | [`AgentStatus`] as JSON |
//! | GET | `/api/queue?sink=NAME&parked=true&limit=N` | pending (or parked) entries per sink |
//! | GET | `/api/queue/ID` | one entry's metadata and its state in every sink |
//! | POST | `/api/queue/ID/retry?sink=NAME` | re-queue a parked entry (every sink, or one) |
//! | POST | `/api/queue/retry-parked?sink=NAME` | re-queue every parked entry (every sink, or one) |
//!
//! # Invariants
//! - **No patient data.** Nothing here reads a payload into an answer: entries are described by
//!   id, control id (MSH-10), kind, source, times, sizes and park reasons only.
//! - **Token.** When a token is configured (required for a non-loopback `listen`), every request,
//!   the status page and probes included, needs `Authorization: Bearer <token>`; otherwise 401.
//!   The comparison takes the same time wherever the first difference is.
//! - **Cross-site requests.** A `POST` whose `Origin` names another host than `Host` is refused
//!   (403), so a web page open in the technician's browser cannot retry messages through a
//!   loopback agent that has no token.
//! - Store calls block (file I/O, fsync): they run on the blocking pool.
//! - After a retry the sinks are woken, so a retried entry is delivered (or parked again) now,
//!   not when the next result arrives.

pub mod metrics;
pub mod page;

use crate::health::{AgentStatus, Health};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use labagent_store::{Entry, Error as StoreError, Kind, Parked, RecordId, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Default and ceiling of `limit` in `GET /api/queue`.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// Parked entries shown per sink on the status page (the API lists them all).
const PAGE_PARKED: usize = 20;

/// What the HTTP handlers read and operate on.
#[derive(Clone)]
pub struct HttpState {
    /// Live health of every source and sink.
    pub health: Arc<Health>,
    /// The store (queue figures, parked entries, retry).
    pub store: Arc<Store>,
    /// The bearer token every request must carry, when configured.
    pub token: Option<String>,
    /// Notified after a retry so that idle sinks look at the store again (the pipeline's
    /// `committed`); `None` when nothing needs waking (tests).
    pub wake: Option<Arc<Notify>>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("agent_id", &self.health.agent_id)
            .field("token", &self.token.as_ref().map(|_| "****"))
            .finish_non_exhaustive()
    }
}

/// Serves the HTTP interface on `listener` until `shutdown` is cancelled; connections in flight
/// are then finished.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: CancellationToken) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

/// The routes, with the token check in front of all of them.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(api_status))
        .route("/api/queue", get(queue_list))
        .route("/api/queue/retry-parked", post(retry_parked))
        .route("/api/queue/{id}", get(queue_entry))
        .route("/api/queue/{id}/retry", post(retry_one))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// An API failure: status and a message (JSON `{"error": ...}`), never patient data.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match e {
            StoreError::UnknownSink { .. } | StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::NotParked { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (
            self.status,
            Json(Body {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Runs a blocking store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()))
}

/// Whether a browser sent this request from a page of another origin.
fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    !origin_host.eq_ignore_ascii_case(host)
}

async fn guard(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token
        && !authorized(request.headers(), token)
    {
        let mut response =
            (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"labagent\""),
        );
        return response;
    }
    if request.method() == axum::http::Method::POST && cross_origin(request.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// The health snapshot with the store's queue figures.
async fn snapshot(state: &HttpState) -> Result<AgentStatus, ApiError> {
    let store = state.store.clone();
    let status = blocking(move || store.status().map_err(ApiError::from)).await?;
    Ok(state.health.snapshot(Some(&status)))
}

async fn api_status(State(state): State<HttpState>) -> Result<Json<AgentStatus>, ApiError> {
    snapshot(&state).await.map(Json)
}

async fn metrics_text(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let status = snapshot(&state).await?;
    let body = metrics::encode(&status).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response())
}

async fn status_page(State(state): State<HttpState>) -> Html<String> {
    let store = state.store.clone();
    let gathered = blocking(move || {
        let status = store.status()?;
        let mut parked = Vec::new();
        for sink in &status.sinks {
            let list = store.parked(&sink.name)?;
            parked.push((
                sink.name.clone(),
                list.into_iter().take(PAGE_PARKED).collect(),
            ));
        }
        Ok((status, parked))
    })
    .await;
    let now_ms = crate::pipeline::unix_ms(std::time::SystemTime::now());
    Html(match gathered {
        Ok((store_status, parked)) => page::render(
            &state.health.snapshot(Some(&store_status)),
            &parked,
            None,
            now_ms,
        ),
        Err(e) => page::render(&state.health.snapshot(None), &[], Some(&e.message), now_ms),
    })
}

/// `GET /api/queue` query.
#[derive(Debug, Deserialize)]
pub struct QueueQuery {
    /// Only this sink (default: every sink).
    pub sink: Option<String>,
    /// List parked entries with their reasons instead of pending ones.
    #[serde(default)]
    pub parked: bool,
    /// At most this many per sink (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// An entry as the API describes it: metadata only, never the payload.
#[derive(Debug, Serialize)]
pub struct EntryInfo {
    /// Record id.
    pub id: u64,
    /// MSH-10 assigned at commit.
    pub control_id: String,
    /// `ORU`, `HL7` (raw) or `ASTM` (raw).
    pub kind: &'static str,
    /// The source that received it.
    pub source: String,
    /// Received, unix ms.
    pub received_ms: i64,
    /// Payload size.
    pub bytes: u64,
}

impl EntryInfo {
    fn of(e: &Entry) -> EntryInfo {
        EntryInfo {
            id: e.id.get(),
            control_id: e.control_id.clone(),
            kind: kind_name(e.kind),
            source: e.source.clone(),
            received_ms: e.received_ms,
            bytes: e.payload.len() as u64,
        }
    }
}

/// A parked entry as the API describes it.
#[derive(Debug, Serialize)]
pub struct ParkedInfo {
    /// Record id.
    pub id: u64,
    /// MSH-10 (empty if the record could not be read).
    pub control_id: String,
    /// Kind (empty if the record could not be read).
    pub kind: &'static str,
    /// Source (empty if the record could not be read).
    pub source: String,
    /// Why it was parked.
    pub reason: String,
    /// When, unix ms.
    pub parked_at_ms: i64,
    /// Received, unix ms.
    pub received_ms: i64,
    /// Size on disk.
    pub bytes: u64,
}

/// One sink's part of `GET /api/queue`.
#[derive(Debug, Serialize)]
pub struct SinkQueue {
    /// The sink.
    pub sink: String,
    /// Pending entries in delivery order (absent when `parked=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<EntryInfo>>,
    /// Parked entries by id (only when `parked=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parked: Option<Vec<ParkedInfo>>,
}

/// `GET /api/queue` answer.
#[derive(Debug, Serialize)]
pub struct QueueList {
    /// One entry per sink asked for.
    pub sinks: Vec<SinkQueue>,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Oru => "ORU",
        Kind::RawHl7 => "HL7",
        Kind::RawAstm => "ASTM",
    }
}

fn parked_info(store: &Store, p: &Parked) -> ParkedInfo {
    let entry = store.get(p.id).ok();
    ParkedInfo {
        id: p.id.get(),
        control_id: entry
            .as_ref()
            .map(|e| e.control_id.clone())
            .unwrap_or_default(),
        kind: entry.as_ref().map_or("", |e| kind_name(e.kind)),
        source: entry.map(|e| e.source).unwrap_or_default(),
        reason: p.reason.clone(),
        parked_at_ms: p.parked_at_ms,
        received_ms: p.received_ms,
        bytes: p.bytes,
    }
}

/// The sink names a request addresses: `only`, which must exist, or every sink in the store.
fn sinks_of(store: &Store, only: Option<&str>) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = store.status()?.sinks.into_iter().map(|s| s.name).collect();
    match only {
        None => Ok(names),
        Some(want) if names.iter().any(|n| n == want) => Ok(vec![want.to_string()]),
        Some(want) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no sink named {want:?}"),
        )),
    }
}

async fn queue_list(
    State(state): State<HttpState>,
    Query(q): Query<QueueQuery>,
) -> Result<Json<QueueList>, ApiError> {
    let store = state.store.clone();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    blocking(move || {
        let mut sinks = Vec::new();
        for name in sinks_of(&store, q.sink.as_deref())? {
            let (pending, parked) = if q.parked {
                let list = store.parked(&name)?;
                let infos = list
                    .iter()
                    .take(limit)
                    .map(|p| parked_info(&store, p))
                    .collect();
                (None, Some(infos))
            } else {
                let list = store.peek(&name, limit)?;
                (Some(list.iter().map(EntryInfo::of).collect()), None)
            };
            sinks.push(SinkQueue {
                sink: name,
                pending,
                parked,
            });
        }
        Ok(Json(QueueList { sinks }))
    })
    .await
}

/// An entry's state in one sink.
#[derive(Debug, Serialize)]
pub struct EntrySinkState {
    /// The sink.
    pub sink: String,
    /// `parked`, `pending` or `done` (delivered, skipped, or not among the next `MAX_LIMIT`).
    pub state: &'static str,
    /// The park reason when parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/queue/ID` answer.
#[derive(Debug, Serialize)]
pub struct EntryDetail {
    /// The entry.
    #[serde(flatten)]
    pub entry: EntryInfo,
    /// Its state per sink.
    pub sinks: Vec<EntrySinkState>,
}

fn parse_id(id: &str) -> Result<RecordId, ApiError> {
    id.trim_start_matches('#')
        .parse::<u64>()
        .map(RecordId::new)
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("not a record id: {id:?} (expected a number such as 42)"),
            )
        })
}

async fn queue_entry(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<EntryDetail>, ApiError> {
    let id = parse_id(&id)?;
    let store = state.store.clone();
    blocking(move || {
        let entry = store.get(id)?;
        let mut sinks = Vec::new();
        for name in sinks_of(&store, None)? {
            let parked = store.parked(&name)?;
            let (state, reason) = if let Some(p) = parked.iter().find(|p| p.id == id) {
                ("parked", Some(p.reason.clone()))
            } else if store.peek(&name, MAX_LIMIT)?.iter().any(|e| e.id == id) {
                ("pending", None)
            } else {
                ("done", None)
            };
            sinks.push(EntrySinkState {
                sink: name,
                state,
                reason,
            });
        }
        Ok(Json(EntryDetail {
            entry: EntryInfo::of(&entry),
            sinks,
        }))
    })
    .await
}

/// `?sink=NAME` of the retry operations.
#[derive(Debug, Deserialize)]
pub struct SinkQuery {
    /// Only this sink (default: every sink).
    pub sink: Option<String>,
}

/// Answer of both retry operations.
#[derive(Debug, Serialize)]
pub struct RetryResult {
    /// Entries put back in line, in all.
    pub retried: usize,
    /// Per sink: how many were re-queued, and how many remain parked right after.
    pub sinks: Vec<SinkRetry>,
}

/// One sink's part of [`RetryResult`].
#[derive(Debug, Serialize)]
pub struct SinkRetry {
    /// The sink.
    pub sink: String,
    /// Entries re-queued.
    pub retried: usize,
    /// Entries still parked right after the retry (before the sink tries them again).
    pub parked: usize,
}

fn wake(state: &HttpState) {
    if let Some(w) = &state.wake {
        w.notify_waiters();
    }
}

async fn retry_one(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    Query(q): Query<SinkQuery>,
) -> Result<Json<RetryResult>, ApiError> {
    let id = parse_id(&id)?;
    let store = state.store.clone();
    let result = blocking(move || {
        let mut sinks = Vec::new();
        let mut retried = 0;
        for name in sinks_of(&store, q.sink.as_deref())? {
            let n = if store.parked(&name)?.iter().any(|p| p.id == id) {
                store.retry(&name, id)?;
                1
            } else {
                0
            };
            retried += n;
            sinks.push(SinkRetry {
                parked: store.parked(&name)?.len(),
                sink: name,
                retried: n,
            });
        }
        if retried == 0 {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("record {} is not parked for any sink asked for", id.get()),
            ));
        }
        Ok(RetryResult { retried, sinks })
    })
    .await?;
    tracing::info!(
        record = id.get(),
        retried = result.retried,
        "parked message re-queued over HTTP"
    );
    wake(&state);
    Ok(Json(result))
}

async fn retry_parked(
    State(state): State<HttpState>,
    Query(q): Query<SinkQuery>,
) -> Result<Json<RetryResult>, ApiError> {
    let store = state.store.clone();
    let result = blocking(move || {
        let mut sinks = Vec::new();
        let mut retried = 0;
        for name in sinks_of(&store, q.sink.as_deref())? {
            let n = store.retry_all(&name)?;
            retried += n;
            sinks.push(SinkRetry {
                parked: store.parked(&name)?.len(),
                sink: name,
                retried: n,
            });
        }
        Ok(RetryResult { retried, sinks })
    })
    .await?;
    tracing::info!(
        retried = result.retried,
        "parked messages re-queued over HTTP"
    );
    wake(&state);
    Ok(Json(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comparison() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn bearer_header() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "t0k"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0k"),
        );
        assert!(authorized(&h, "t0k"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t0k "),
        );
        assert!(authorized(&h, "t0k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic t0k"));
        assert!(!authorized(&h, "t0k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t0"));
        assert!(!authorized(&h, "t0k"));
    }

    #[test]
    fn origin_check() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9898"));
        assert!(!cross_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9898"),
        );
        assert!(!cross_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_origin(&h));
    }
}
