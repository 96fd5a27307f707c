//! Where requests run: an HTTP/1 connection on one connection worker for its
//! whole life, connections handed to the workers in turn, HTTP/2 streams on
//! the shared runtime, and background work that requests start finishing
//! before the process stops.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use runtime::{Context, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

/// `GET /thread` answers the name of the thread that ran the handler.
async fn spawn_app(
    routes: impl FnOnce(Context) -> Router,
) -> (u16, Context, runtime::testing::Spawned) {
    let app = runtime::testing::spawn_routes("test-fn", &[], |ctx| async move {
        let router = routes(ctx).route("/thread", get(|| async { thread_name() }));
        Ok(Routes::new(router))
    })
    .await;
    (app.port, app.ctx.clone(), app)
}

/// One `GET /thread` on a connection of its own.
async fn thread_of_new_connection(port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /thread HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.rsplit("\r\n\r\n").next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connections_go_to_the_connection_workers_in_turn() {
    let (port, ctx, _server) = spawn_app(|_| Router::new()).await;
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut seen = HashSet::new();
    for _ in 0..cores * 2 {
        let name = thread_of_new_connection(port).await;
        assert!(name.starts_with("conn-worker-"), "served on {name}");
        seen.insert(name);
    }
    assert_eq!(seen.len(), cores, "every worker took connections: {seen:?}");

    // A keep-alive connection stays on its worker.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/thread");
    let mut names = HashSet::new();
    for _ in 0..5 {
        names.insert(client.get(&url).send().await.unwrap().text().await.unwrap());
    }
    assert_eq!(names.len(), 1, "one connection, one worker: {names:?}");
    ctx.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_run_on_the_shared_runtime() {
    let (port, ctx, _server) = spawn_app(|_| Router::new()).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/thread");
    let replies = futures::future::join_all((0..8).map(|_| async {
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        resp.text().await.unwrap()
    }))
    .await;
    for name in replies {
        assert!(
            !name.starts_with("conn-worker-"),
            "an HTTP/2 stream ran on the connection's worker ({name})"
        );
    }
    ctx.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_started_by_a_request_finishes_before_the_stop() {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let (port, _, server) = spawn_app(move |ctx| {
        Router::new()
            .route(
                "/later",
                post(
                    |State((ctx, flag)): State<(Context, Arc<AtomicBool>)>| async move {
                        // Tracked work spawned from a handler runs on its worker.
                        ctx.tasks.spawn(async move {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            flag.store(true, Ordering::SeqCst);
                        });
                        "started"
                    },
                ),
            )
            .with_state((ctx, flag))
    })
    .await;
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/later"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "started");
    // As SIGTERM would: cancel, then wait for the drain.
    server.stop().await;
    assert!(
        done.load(Ordering::SeqCst),
        "the stop came before the request's background work finished"
    );
}
