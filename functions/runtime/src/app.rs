//! The Knative container contract, once: bind `$PORT` (HTTP/1.1 and h2c on
//! one port), health and metrics routes, revision header, trace context,
//! body limit, request and header-read timeouts, who may write (`auth`),
//! SIGTERM drain, and the Lambda runtime when `AWS_LAMBDA_RUNTIME_API` is set.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Verifier;
use crate::config::Config;
use crate::contract::ContractLayer;
use crate::settings::{self, Function};
use crate::sink::Sink;
use crate::workers::{StreamExecutor, Workers};
use crate::{auth, metrics, telemetry};

/// A readiness check: `Ok` when the dependency answers.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

type Wrap = Box<dyn FnOnce(Router) -> Router + Send>;

/// What a function contributes: its routes, who may write to them, and the
/// checks behind `/readyz`.
pub struct Routes {
    router: Router,
    checks: Vec<(&'static str, ReadyCheck)>,
    writers: Option<Verifier>,
    before_auth: Vec<Wrap>,
    read_only: bool,
}

impl Routes {
    /// `router`'s write routes (any method but GET, HEAD, OPTIONS) need the
    /// internal token when `INTERNAL_TOKEN` is set: they are hops between
    /// functions. A public write endpoint names its own credentials with
    /// [`Routes::writes_need`].
    pub fn new(router: Router) -> Routes {
        Routes {
            router,
            checks: Vec::new(),
            writers: None,
            before_auth: Vec::new(),
            read_only: false,
        }
    }

    /// Declares that these routes only read (GET): the start-up log says so
    /// instead of reporting on write credentials. Writes still go through
    /// the internal-token check, so a write route added by mistake is guarded.
    pub fn read_only(mut self) -> Routes {
        self.read_only = true;
        self
    }

    /// The credentials write requests to these routes need instead of the
    /// internal token.
    pub fn writes_need(mut self, verifier: Verifier) -> Routes {
        self.writers = Some(verifier);
        self
    }

    /// A layer that runs before the credential check (CORS, so refusals are
    /// readable cross-origin; rate limits, so refusals are cheap). Layers
    /// added later run first.
    pub fn before_auth<L>(mut self, layer: L) -> Routes
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as tower::Service<Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        self.before_auth
            .push(Box::new(move |r: Router| r.layer(layer)));
        self
    }

    /// Adds a named dependency check to `/readyz`.
    pub fn ready_when<F, Fut>(mut self, name: &'static str, check: F) -> Routes
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()))));
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
                // Below the servers' idle close (HEADER_READ_TIMEOUT_MS, 30 s by
                // default), so a pooled connection is not reused as it closes.
                .pool_idle_timeout(Duration::from_secs(20))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("the HTTP client configuration is valid")
        })
    }

    /// The output sink (`K_SINK`), when one is configured.
    pub fn sink(&self) -> Option<Sink> {
        Some(self.sink_to(self.config.sink.as_deref()?))
    }

    /// A sink to `url` the way `K_SINK` is sent to: `K_CE_OVERRIDES` applied
    /// and the internal token (when set) sent along.
    pub fn sink_to(&self, url: &str) -> Sink {
        Sink::new(url, &self.config.ce_overrides).with_bearer(self.config.internal_token.clone())
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
            .map_err(|e| {
                anyhow::anyhow!("cannot listen on {}:{}: {e}", config.host, config.port)
            })?;
        let addr = listener.local_addr()?;
        let ctx = Context::new(config);
        // The recorder first: functions register their own metrics while building routes.
        metrics::handle();
        let routes = make(ctx.clone()).await?;
        let router = contract_router(&ctx, routes)?;
        Ok(App {
            listener,
            addr,
            router,
            ctx,
        })
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
        let App {
            listener,
            router,
            ctx,
            ..
        } = self;
        let token = ctx.shutdown.clone();
        // The workers live until this returns: what requests spawned on them
        // (tracked background work, client connections) must outlive the drain.
        let workers = Arc::new(Workers::start(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )?);
        tracing::debug!(workers = workers.len(), "connection workers started");
        tokio::spawn(stop_on_signal(token.clone()));
        let mut server = tokio::spawn(serve(
            listener,
            router,
            token.clone(),
            ctx.config.header_read_timeout,
            workers.clone(),
        ));
        // Biased: when shutdown has begun, an idle server may finish in the same
        // poll; that is the drain completing, not the server failing.
        let mut drained = false;
        tokio::select! {
            biased;
            _ = token.cancelled() => {}
            res = &mut server => {
                let stopping = token.is_cancelled();
                token.cancel();
                res??;
                if !stopping {
                    anyhow::bail!("the server stopped by itself");
                }
                drained = true;
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        let deadline = tokio::time::Instant::now() + ctx.config.shutdown_timeout;
        if !drained {
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(res) => res??,
                Err(_) => tracing::warn!("requests still in flight at the shutdown timeout"),
            }
        }
        ctx.tasks.close();
        if tokio::time::timeout_at(deadline, ctx.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running at the shutdown timeout");
        }
        drop(workers);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Accepts connections until `stop`, then lets every open connection finish
/// its in-flight requests and close. Unlike `axum::serve`, no client can hold
/// a connection without sending requests: the first request must arrive
/// within `header_read_timeout` (whatever the protocol), and HTTP/1 request
/// heads after it too (which also closes idle keep-alive connections);
/// HTTP/2 connections are pinged so vanished peers are dropped.
async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    header_read_timeout: Duration,
    workers: Arc<Workers>,
) -> std::io::Result<()> {
    let builder = connection_builder(header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        // Handed to a worker's runtime: the socket leaves this one's poller.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "cannot hand the connection to a worker");
                continue;
            }
        };
        let connection = Connection {
            peer,
            router: router.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            header_read_timeout,
        };
        workers.spawn(connection.serve(stream));
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// HTTP/1 with the header read timeout; HTTP/2 pinged every 30 s.
fn connection_builder(header_read_timeout: Duration) -> auto::Builder<StreamExecutor> {
    let mut builder = auto::Builder::new(StreamExecutor::current());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// One accepted connection and what serving it needs, on a worker.
struct Connection {
    peer: SocketAddr,
    router: Router,
    builder: auto::Builder<StreamExecutor>,
    watcher: Watcher,
    header_read_timeout: Duration,
}

impl Connection {
    /// Serves the connection's requests until it closes (or sends no
    /// request within the header read timeout).
    async fn serve(self, stream: std::net::TcpStream) {
        let Connection {
            peer,
            router,
            builder,
            watcher,
            header_read_timeout,
        } = self;
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "cannot serve the connection");
                return;
            }
        };
        let first_request = Arc::new(AtomicBool::new(false));
        let seen = first_request.clone();
        let service = tower::ServiceExt::map_request(
            router,
            move |mut req: Request<hyper::body::Incoming>| {
                seen.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service),
        );
        let conn = watcher.watch(conn.into_owned());
        let mut conn = std::pin::pin!(conn);
        // hyper's header timeout starts only once the protocol is known;
        // a client that sends nothing, or half an HTTP/2 preface, is cut here.
        let result = tokio::select! {
            r = &mut conn => r,
            _ = tokio::time::sleep(header_read_timeout) => {
                if !first_request.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request within the header read timeout; closing");
                    return;
                }
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, %peer, "connection closed with an error");
        }
    }
}

async fn stop_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
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
fn contract_router(ctx: &Context, routes: Routes) -> anyhow::Result<Router> {
    let cfg = &ctx.config;
    metrics::handle();
    ::metrics::gauge!("function_info", "service" => cfg.service.clone(), "revision" => cfg.revision.clone(), "configuration" => cfg.configuration.clone()).set(1.0);
    let checks = Arc::new(routes.checks);
    let revision = HeaderValue::from_str(&cfg.revision)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    let writers = routes
        .writers
        .unwrap_or_else(|| Verifier::internal(cfg.internal_token.as_ref()));
    if routes.read_only {
        tracing::info!(auth = "read-only", "no write routes: reads are public");
    } else if writers.is_open() {
        auth::refuse_open_when_deployed(&writers, cfg.deployed, cfg.allow_open_writes)?;
        tracing::info!(
            auth = "off",
            "auth is off: write routes accept any caller ({} to require credentials)",
            writers.configured_by()
        );
    } else {
        tracing::info!(auth = "on", "write routes need {}", writers.describe());
    }
    let router = routes.router.route_layer(middleware::from_fn_with_state(
        Arc::new(writers),
        auth::require,
    ));
    let router = routes
        .before_auth
        .into_iter()
        .fold(router, |r, wrap| wrap(r));
    Ok(router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(checks))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    metrics::render(),
                )
            }),
        )
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ))
        .layer(ContractLayer::new(revision)))
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
    // `/readyz` is public: it names the failing dependency, and the error
    // text (hosts, ports, driver messages) goes to the log only.
    let failing: Vec<&str> = results
        .into_iter()
        .filter_map(|(name, r)| {
            let e = r.err()?;
            tracing::warn!(dependency = name, error = %e, "not ready: a dependency is failing");
            Some(name)
        })
        .collect();
    if failing.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "failing": failing})),
        )
    }
}

/// The whole `main` of a function: logs, config, then either the TCP
/// server or the Lambda runtime. Exit code 0 after a clean drain, 1 on a
/// runtime error, 2 on bad configuration.
pub fn main<F: Function>() -> ExitCode {
    let started = Instant::now();
    telemetry::init(F::NAME);
    let (config, own) = match settings::read::<F>(&crate::config::env_lookup) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let make = move |ctx| F::routes(ctx, own);
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
    metrics::handle();
    let routes = make(ctx.clone()).await?;
    let router = contract_router(&ctx, routes)?;
    tracing::info!(api = ?ctx.config.lambda_runtime_api, "serving through the Lambda runtime API");
    lambda_http::run(router)
        .await
        .map_err(|e| anyhow::anyhow!("Lambda runtime stopped: {e}"))
}
