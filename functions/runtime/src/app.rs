//! The Knative container contract, once: bind `$PORT` (HTTP/1.1 and h2c on
//! one port), health and metrics routes, revision header, trace context,
//! body limit and request timeout, SIGTERM drain, and the Lambda runtime
//! when `AWS_LAMBDA_RUNTIME_API` is set.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::sink::Sink;
use crate::{metrics, telemetry, trace};

/// Response header naming the revision that served the request, so a load
/// test can measure a traffic split from outside.
pub const REVISION_HEADER: &str = "x-revision";

/// A readiness check: `Ok` when the dependency answers.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What a function contributes: its routes and the checks behind `/readyz`.
pub struct Routes {
    router: Router,
    checks: Vec<(&'static str, ReadyCheck)>,
}

impl Routes {
    pub fn new(router: Router) -> Routes {
        Routes { router, checks: Vec::new() }
    }

    /// Adds a named dependency check to `/readyz`.
    pub fn ready_when<F, Fut>(mut self, name: &'static str, check: F) -> Routes
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(check()))));
        self
    }
}

/// What every handler and background task of a function can reach.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    /// Cancelled when shutdown begins (SIGTERM, SIGINT, or a test).
    pub shutdown: CancellationToken,
    /// Background work that must finish (flush) before the process exits.
    pub tasks: TaskTracker,
    http: Arc<OnceLock<reqwest::Client>>,
}

impl Context {
    fn new(config: Config) -> Context {
        Context {
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            http: Arc::new(OnceLock::new()),
        }
    }

    /// The shared HTTP client, built on first use (not before the port is bound).
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            install_crypto_provider();
            reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("the HTTP client configuration is valid")
        })
    }

    /// The output sink (`K_SINK`), when one is configured.
    pub fn sink(&self) -> Option<Sink> {
        let url = self.config.sink.as_deref()?;
        Some(Sink::new(url, self.http().clone(), &self.config.ce_overrides))
    }
}

/// Installs rustls' ring provider for the process (one TLS stack, no aws-lc).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A function bound to its port, ready to serve.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    ctx: Context,
}

impl App {
    /// Binds the listener first, then builds the function's routes (which
    /// must not wait on dependencies: their connections are lazy).
    pub async fn build<F, Fut>(config: Config, make: F) -> anyhow::Result<App>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = anyhow::Result<Routes>>,
    {
        let listener = TcpListener::bind((config.host, config.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", config.host, config.port))?;
        let addr = listener.local_addr()?;
        let ctx = Context::new(config);
        let routes = make(ctx.clone()).await?;
        let router = contract_router(&ctx, routes);
        Ok(App { listener, addr, router, ctx })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Serves until SIGTERM/SIGINT (or the context's shutdown token), then
    /// stops accepting, lets in-flight requests and background tasks finish
    /// within `SHUTDOWN_TIMEOUT_MS`, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let App { listener, router, ctx, .. } = self;
        let token = ctx.shutdown.clone();
        tokio::spawn(stop_on_signal(token.clone()));
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(token.clone().cancelled_owned());
        let mut server = tokio::spawn(async move { serve.await });
        tokio::select! {
            res = &mut server => {
                token.cancel();
                res??;
                anyhow::bail!("the server stopped by itself");
            }
            _ = token.cancelled() => {}
        }
        tracing::info!("shutting down: draining in-flight requests");
        let deadline = tokio::time::Instant::now() + ctx.config.shutdown_timeout;
        match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(res) => res??,
            Err(_) => tracing::warn!("requests still in flight at the shutdown timeout"),
        }
        ctx.tasks.close();
        if tokio::time::timeout_at(deadline, ctx.tasks.wait()).await.is_err() {
            tracing::warn!("background tasks still running at the shutdown timeout");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn stop_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
        _ = token.cancelled() => return,
    }
    token.cancel();
}

/// The function's routes wrapped in everything the contract promises.
fn contract_router(ctx: &Context, routes: Routes) -> Router {
    let cfg = &ctx.config;
    metrics::handle();
    ::metrics::gauge!("function_info", "service" => cfg.service.clone(), "revision" => cfg.revision.clone(), "configuration" => cfg.configuration.clone()).set(1.0);
    let checks = Arc::new(routes.checks);
    let revision = HeaderValue::from_str(&cfg.revision).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    routes
        .router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(checks))
        .route("/metrics", get(|| async {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render())
        }))
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.request_timeout))
        .layer(middleware::from_fn(metrics::layer))
        .layer(middleware::from_fn(trace::layer))
        .layer(SetResponseHeaderLayer::overriding(HeaderName::from_static(REVISION_HEADER), revision))
}

async fn readyz(State(checks): State<Arc<Vec<(&'static str, ReadyCheck)>>>) -> impl IntoResponse {
    let results = futures::future::join_all(checks.iter().map(|(name, check)| async move {
        let r = match tokio::time::timeout(Duration::from_secs(2), check()).await {
            Ok(r) => r,
            Err(_) => Err("no answer within 2 s".to_owned()),
        };
        (*name, r)
    }))
    .await;
    let failing: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .filter_map(|(n, r)| r.err().map(|e| (n.to_owned(), e.into())))
        .collect();
    if failing.is_empty() {
        (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "not ready", "failing": failing})))
    }
}

/// The whole `main` of a function: logs, config, then either the TCP
/// server or the Lambda runtime. Exit code 0 after a clean drain, 1 on a
/// runtime error, 2 on bad configuration.
pub fn main<F, Fut>(function: &'static str, make: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Routes>>,
{
    let started = Instant::now();
    telemetry::init(function);
    let config = match Config::from_env(function) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        if config.lambda_runtime_api.is_some() {
            return serve_lambda(config, make).await;
        }
        let app = App::build(config, make).await?;
        let listen_s = started.elapsed().as_secs_f64();
        ::metrics::gauge!("function_start_to_listen_seconds").set(listen_s);
        tracing::info!(addr = %app.addr(), revision = %app.context().config.revision, start_to_listen_ms = listen_s * 1000.0, "listening");
        app.run_until_stopped().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Serves the same Router through the AWS Lambda runtime API.
async fn serve_lambda<F, Fut>(config: Config, make: F) -> anyhow::Result<()>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Routes>>,
{
    let ctx = Context::new(config);
    let routes = make(ctx.clone()).await?;
    let router = contract_router(&ctx, routes);
    tracing::info!(api = ?ctx.config.lambda_runtime_api, "serving through the Lambda runtime API");
    lambda_http::run(router)
        .await
        .map_err(|e| anyhow::anyhow!("Lambda runtime stopped: {e}"))
}
