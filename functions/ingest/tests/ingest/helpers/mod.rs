//! Spawns ingest in-process on a free port, plus the receivers it sends to:
//! an HTTP CloudEvents sink and a gRPC CaseWriter that record what arrives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use events::http::CloudEvent;
use events::proto::writer::case_writer_server::{CaseWriter, CaseWriterServer};
use events::proto::writer::{WriteRequest, WriteResponse, WriteResult, WriteStatus};
use events::{Event, Reported};

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
}

/// Starts ingest with `env` (plus PORT=0 on loopback) and returns its URL.
pub async fn spawn_ingest(env: &[(&str, &str)]) -> TestApp {
    let app = runtime::testing::spawn::<ingest::Function>(env).await;
    TestApp {
        url: app.url,
        client: stack::testing::http_client(),
    }
}

impl TestApp {
    pub async fn post(
        &self,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut rb = self.client.post(format!("{}/cases", self.url)).body(body);
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        rb.send().await.expect("ingest answers")
    }

    pub async fn post_json(&self, body: &str) -> reqwest::Response {
        self.post(Some("application/json"), body.to_owned()).await
    }
}

/// An HTTP CloudEvents receiver that records every event; `status` is what it answers.
#[derive(Clone)]
pub struct SinkServer {
    pub url: String,
    pub received: Arc<Mutex<Vec<Event>>>,
}

pub async fn spawn_sink(status: StatusCode, delay: Duration) -> SinkServer {
    let received = Arc::new(Mutex::new(Vec::new()));
    let rec = received.clone();
    let router = Router::new().route(
        "/",
        post(move |CloudEvent(e): CloudEvent| {
            let rec = rec.clone();
            async move {
                tokio::time::sleep(delay).await;
                if status.is_success() {
                    rec.lock().unwrap().push(e);
                }
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    SinkServer { url, received }
}

impl SinkServer {
    pub fn events(&self) -> Vec<Event> {
        self.received.lock().unwrap().clone()
    }
}

/// A gRPC CaseWriter that records every event and reports each as stored.
#[derive(Clone, Default)]
pub struct RecordingWriter {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub traceparents: Arc<Mutex<Vec<String>>>,
    /// Events per call, in the order the calls arrived.
    pub calls: Arc<Mutex<Vec<usize>>>,
    /// How long each call takes to answer.
    pub delay: Duration,
    /// Case names of every call, recorded as the call arrives.
    pub arrived: Arc<Mutex<Vec<String>>>,
    /// Each call's `grpc-timeout` header (empty when it had none).
    pub timeouts: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl CaseWriter for RecordingWriter {
    async fn write(
        &self,
        req: tonic::Request<WriteRequest>,
    ) -> Result<tonic::Response<WriteResponse>, tonic::Status> {
        if let Some(t) = req
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
        {
            self.traceparents.lock().unwrap().push(t.to_owned());
        }
        let timeout = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.timeouts.lock().unwrap().push(timeout);
        let events = req.into_inner().events;
        self.calls.lock().unwrap().push(events.len());
        for pe in &events {
            if let Ok(r) =
                events::proto::from_proto(pe.clone()).and_then(|e| Reported::from_event(&e))
            {
                self.arrived.lock().unwrap().push(r.case.name.to_string());
            }
        }
        tokio::time::sleep(self.delay).await;
        let mut results = Vec::new();
        for pe in events {
            let id = pe.id.clone();
            let e =
                events::proto::from_proto(pe).map_err(|e| tonic::Status::invalid_argument(e.0))?;
            self.events.lock().unwrap().push(e);
            results.push(WriteResult {
                id,
                status: WriteStatus::Stored as i32,
                error: String::new(),
            });
        }
        Ok(tonic::Response::new(WriteResponse { results }))
    }

    async fn write_stream(
        &self,
        _req: tonic::Request<tonic::Streaming<WriteRequest>>,
    ) -> Result<tonic::Response<WriteResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("ingest uses unary writes"))
    }
}

pub async fn spawn_writer() -> (String, RecordingWriter) {
    spawn_slow_writer(Duration::ZERO).await
}

pub async fn spawn_slow_writer(delay: Duration) -> (String, RecordingWriter) {
    let writer = RecordingWriter {
        delay,
        ..RecordingWriter::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let svc = CaseWriterServer::new(writer.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    (url, writer)
}

pub fn case_json(name: &str, age: u8) -> String {
    format!(
        r#"{{"name":"{name}","location":"Quetzaltenango","age":{age},"infectedtype":"community","state":"active"}}"#
    )
}
