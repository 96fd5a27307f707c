//! dashboard-api: the dashboard's JSON API, live Server-Sent Events, and the
//! built browser page. All reads come from the materialised statistics (or
//! one page of `cases` by cursor), so their cost does not grow with the
//! number of stored cases.

pub mod config;
pub mod live;
pub mod query;
pub mod snapshot;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use runtime::{ApiError, Context, Routes};
use serde_json::json;
use store::{Aggregator, CaseStore, IngestLog, Mongo, RedisStats};
use tower_http::cors::CorsLayer;
use tower_http::services::{ServeDir, ServeFile};

pub use config::DashboardConfig;
use query::Params;

/// dashboard-api, declared once: its name, its variables ([`DashboardConfig`]) and its routes.
pub struct Function;

impl runtime::Function for Function {
    const NAME: &'static str = "dashboard-api";
    type Config = DashboardConfig;

    fn routes(
        ctx: Context,
        config: DashboardConfig,
    ) -> impl Future<Output = anyhow::Result<Routes>> {
        routes(ctx, config)
    }
}

struct Api {
    agg: Aggregator,
    cases: CaseStore,
    log: IngestLog,
    latest: live::Latest,
    ctx: Context,
    /// One permit per open `/api/stream` (`SSE_MAX_CLIENTS`).
    sse_slots: Arc<tokio::sync::Semaphore>,
}

type ApiState = State<Arc<Api>>;

pub async fn routes(ctx: Context, config: DashboardConfig) -> anyhow::Result<Routes> {
    let mongo = Mongo::connect_lazy(&config.mongo).await?;
    let conn = runtime::redis::connect_lazy(&config.redis.url)?;
    let keys = config.redis.keys();
    let agg = Aggregator::new(mongo.clone(), RedisStats::new(conn.clone(), keys.clone()));
    let latest = live::start(
        &ctx,
        agg.clone(),
        config.redis.url.clone(),
        keys.stats_channel(),
        config.sse_min_interval,
        config.sse_refresh,
    );
    metrics::describe_gauge!(
        "dashboard_sse_clients",
        "Browsers connected to the live stream (SSE) now"
    );
    metrics::gauge!("dashboard_sse_clients").set(0.0);
    let api = Arc::new(Api {
        agg,
        cases: CaseStore::new(mongo.clone()),
        log: IngestLog::new(mongo.clone()),
        latest,
        ctx: ctx.clone(),
        sse_slots: Arc::new(tokio::sync::Semaphore::new(config.sse_max_clients)),
    });
    let mut api_router = Router::new()
        .route("/api/snapshot", get(get_snapshot))
        .route("/api/summary", get(get_summary))
        .route("/api/areas/top", get(get_top_areas))
        .route("/api/states", get(get_states))
        .route("/api/cases/recent", get(get_recent))
        .route("/api/ages", get(get_ages))
        .route("/api/cases", get(get_cases))
        .route("/api/ingest-log", get(get_ingest_log))
        .route("/api/stream", get(stream))
        .route("/api/{*rest}", get(not_found))
        .with_state(api);
    if let Some(origin) = &config.cors_origin {
        let origin = HeaderValue::from_str(origin)
            .map_err(|_| anyhow::anyhow!("CORS_ORIGIN={origin:?} is not a valid origin"))?;
        api_router = api_router.layer(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET]),
        );
    }
    let dir = config.dashboard_dir.clone();
    let page = ServeDir::new(&dir).fallback(ServeFile::new(dir.join("index.html")));
    let dir_missing = !dir.join("index.html").exists();
    let router = if dir_missing {
        tracing::warn!(dir = %dir.display(), "the dashboard is not built: run `make dashboard`; the API still works");
        api_router.fallback(move || async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the dashboard page is not built ({}): run `make dashboard`",
                    dir.display()
                ),
            )
        })
    } else {
        api_router.fallback_service(page)
    };
    Ok(Routes::new(router)
        .read_only()
        .ready_when("mongodb", mongo.ready_check())
        .ready_when("redis", runtime::redis::ready_check(&conn)))
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(
        format!("statistics are unavailable right now: {e}"),
        Duration::from_secs(1),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such API endpoint; see the README for the list",
    )
}

async fn get_snapshot(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    Ok(Json(snapshot::snapshot(&s.agg).await.map_err(unavailable)?).into_response())
}

async fn get_summary(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    Ok(Json(snapshot::summary(&s.agg).await.map_err(unavailable)?).into_response())
}

async fn get_top_areas(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["n"])?;
    let n = p.int("n", 1, 100, 3)?;
    let areas = s.agg.top_areas(n).await.map_err(unavailable)?;
    Ok(Json(json!({ "areas": areas })).into_response())
}

async fn get_states(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let states = s.agg.states().await.map_err(unavailable)?;
    Ok(Json(json!({ "states": states })).into_response())
}

async fn get_recent(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["n"])?;
    let n = p.int("n", 1, store::redis_stats::RECENT_KEEP as u32, 5)?;
    let cases = s
        .agg
        .redis()
        .recent(n as usize)
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({ "cases": cases })).into_response())
}

async fn get_ages(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let buckets = s.agg.redis().ages().await.map_err(unavailable)?;
    Ok(Json(json!({ "buckets": buckets })).into_response())
}

async fn get_cases(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["limit", "after", "location", "state"])?;
    let limit = p.int("limit", 1, 100, 20)?;
    let after = p.cursor("after")?;
    let location = p.text("location")?;
    let state = p.text("state")?;
    let page = s
        .cases
        .page(
            limit,
            after.as_deref(),
            location.as_deref(),
            state.as_deref(),
        )
        .await
        .map_err(unavailable)?;
    Ok(Json(page).into_response())
}

async fn get_ingest_log(State(s): ApiState, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["limit"])?;
    let limit = p.int("limit", 1, 500, 50)?;
    let entries = s.log.latest(limit).await.map_err(unavailable)?;
    Ok(Json(json!({ "entries": entries })).into_response())
}

/// Holds a stream's slot and decrements the client gauge when the stream
/// ends, however it ends.
struct ClientGuard {
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        metrics::gauge!("dashboard_sse_clients").decrement(1.0);
    }
}

/// `GET /api/stream`: a `snapshot` event at once, then one per change.
async fn stream(
    State(s): ApiState,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    // Streams are public and long-lived: past the cap a client is told to
    // come back later (or to poll `/api/snapshot`) instead of holding memory.
    let slot = s.sse_slots.clone().try_acquire_owned().map_err(|_| {
        metrics::counter!("dashboard_sse_refused_total").increment(1);
        ApiError::unavailable(
            "too many live dashboards are connected (SSE_MAX_CLIENTS): retry later, or poll /api/snapshot",
            Duration::from_secs(5),
        )
    })?;
    let first = snapshot::snapshot(&s.agg).await.map_err(unavailable)?;
    let first = serde_json::to_string(&first).expect("a snapshot serializes");
    let mut latest = s.latest.clone();
    latest.mark_unchanged();
    let shutdown = s.ctx.shutdown.clone();
    metrics::gauge!("dashboard_sse_clients").increment(1.0);
    let events = async_stream(first, latest, shutdown, ClientGuard { _slot: slot });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn async_stream(
    first: String,
    latest: live::Latest,
    shutdown: tokio_util::sync::CancellationToken,
    guard: ClientGuard,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let initial =
        futures::stream::once(async move { Ok(Event::default().event("snapshot").data(first)) });
    let updates = futures::stream::unfold(
        (latest, shutdown, guard),
        |(mut rx, shutdown, guard)| async move {
            loop {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return None },
                    // Ends open streams so a SIGTERM drain does not wait on them.
                    _ = shutdown.cancelled() => return None,
                }
                let data = rx.borrow_and_update().clone();
                if let Some(json) = data {
                    return Some((
                        Ok(Event::default().event("snapshot").data(json.as_ref())),
                        (rx, shutdown, guard),
                    ));
                }
            }
        },
    );
    initial.chain(updates)
}
