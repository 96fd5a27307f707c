//! ingest against real receivers: an HTTP sink, a gRPC writer and Redis.

use crate::helpers;

use std::time::Duration;

use axum::http::StatusCode;
use events::cloudevents::AttributesReader;
use events::{Reported, types};
use helpers::*;
use redis::AsyncCommands;
use serde_json::Value;

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.expect("a JSON body")
}

#[tokio::test]
async fn single_case_reaches_the_http_sink_as_a_cloudevent() {
    let sink = spawn_sink(StatusCode::ACCEPTED, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("K_REVISION", "ingest-00007"),
        ("K_CE_OVERRIDES", r#"{"extensions":{"cluster":"test"}}"#),
    ])
    .await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = app
        .client
        .post(format!("{}/cases", app.url))
        .header("content-type", "application/json")
        .header("traceparent", parent)
        .body(case_json("Ana", 34))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["x-revision"], "ingest-00007");
    let body = json(resp).await;
    assert_eq!(body["accepted"], 1);
    let id = body["ids"][0].as_str().unwrap().to_owned();

    let got = sink.events();
    assert_eq!(got.len(), 1);
    let e = &got[0];
    assert_eq!(e.id(), id);
    assert_eq!(e.ty(), types::CASE_REPORTED);
    assert_eq!(e.source().to_string(), "/covid-realtime/ingest");
    assert_eq!(e.datacontenttype(), Some("application/json"));
    assert!(e.time().is_some());
    assert_eq!(
        events::string_extension(e, "cluster").as_deref(),
        Some("test")
    );
    let tp = events::string_extension(e, "traceparent").unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "trace continues: {tp}"
    );
    let r = Reported::from_event(e).unwrap();
    assert_eq!(r.case.name.as_str(), "Ana");
    assert_eq!(r.case.age.years(), 34);
    assert_eq!(r.revision.as_deref(), Some("ingest-00007"));
}

#[tokio::test]
async fn array_and_ndjson_batches_reach_the_sink_whole() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[("K_SINK", &sink.url)]).await;
    let batch = format!(
        "[{},{},{}]",
        case_json("A", 1),
        case_json("B", 2),
        case_json("C", 3)
    );
    let body = json(app.post_json(&batch).await).await;
    assert_eq!(body["accepted"], 3);
    let nd = format!("{}\n{}\n", case_json("D", 4), case_json("E", 5));
    let resp = app.post(Some("application/x-ndjson"), nd).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let mut names: Vec<String> = sink
        .events()
        .iter()
        .map(|e| Reported::from_event(e).unwrap().case.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["A", "B", "C", "D", "E"]);
    let ids: std::collections::HashSet<_> =
        sink.events().iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(ids.len(), 5, "every case has its own id");
}

#[tokio::test]
async fn grpc_route_sends_one_write_per_batch() {
    let (url, writer) = spawn_writer().await;
    let app = spawn_ingest(&[("INGEST_ROUTE", "grpc"), ("GRPC_WRITER_URL", &url)]).await;
    let batch = format!("[{},{}]", case_json("A", 10), case_json("B", 20));
    let body = json(app.post_json(&batch).await).await;
    assert_eq!(body["accepted"], 2);
    let got = writer.events.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id(), body["ids"][0]);
    assert_eq!(Reported::from_event(&got[1]).unwrap().case.age.years(), 20);
    assert_eq!(
        writer.traceparents.lock().unwrap().len(),
        1,
        "one gRPC call for the batch"
    );
    let ready = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

/// A request in a gRPC call that does not answer in time gets 504 with its
/// ids (the writer had it: the outcome is unknown), never a 503; a request
/// whose caller goes away while it waits for a call slot is withdrawn and
/// never sent. Each call carries its deadline to the writer (`grpc-timeout`).
#[tokio::test]
async fn an_unanswered_call_gets_504_with_its_ids_and_abandoned_queued_requests_are_never_sent() {
    let (url, writer) = spawn_slow_writer(Duration::from_secs(3)).await;
    let app = spawn_ingest(&[
        ("INGEST_ROUTE", "grpc"),
        ("GRPC_WRITER_URL", &url),
        ("FORWARD_TIMEOUT_MS", "1500"),
    ])
    .await;
    // Eight posts one after another fill every call slot...
    let first = futures::future::join_all((0..8).map(|i| {
        let app = &app;
        async move {
            tokio::time::sleep(Duration::from_millis(30 * i)).await;
            let name = format!("InFlight{i}");
            let resp = app.post_json(&case_json(&name, 30)).await;
            (name, resp.status(), json(resp).await)
        }
    }));
    // ...then ten more find none free, wait in the queue, and their client
    // gives up before a slot frees.
    let second = futures::future::join_all((0..10).map(|i| {
        let app = &app;
        async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let sent = app
                .client
                .post(format!("{}/cases", app.url))
                .header("content-type", "application/json")
                .timeout(Duration::from_millis(300))
                .body(case_json(&format!("Abandoned{i}"), 30))
                .send()
                .await;
            assert!(sent.is_err(), "the client gave up first");
        }
    }));
    let (first, _) = tokio::join!(first, second);
    // Let the writer answer every call it got, so nothing is still on its way.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let arrived: std::collections::HashSet<String> =
        writer.arrived.lock().unwrap().iter().cloned().collect();
    for (name, status, body) in &first {
        assert_eq!(status.as_u16(), 504, "{name}: {body}");
        assert!(
            arrived.contains(name),
            "{name} got 504 but never reached the writer"
        );
        assert_eq!(body["ids"].as_array().map(Vec::len), Some(1), "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("outcome unknown"),
            "{body}"
        );
    }
    let abandoned: Vec<&String> = arrived
        .iter()
        .filter(|n| n.starts_with("Abandoned"))
        .collect();
    assert!(
        abandoned.is_empty(),
        "abandoned requests were sent: {abandoned:?}"
    );
    let timeouts = writer.timeouts.lock().unwrap().clone();
    assert!(
        timeouts
            .iter()
            .all(|t| t.ends_with('m') || t.ends_with('u')),
        "every call carries its deadline: {timeouts:?}"
    );
}

/// Concurrent single-case requests share gRPC calls: while the calls in
/// flight are busy, the requests that arrive queue up and go out together,
/// and each request still gets exactly its own cases' results.
#[tokio::test]
async fn grpc_route_groups_concurrent_requests_into_shared_calls() {
    let (url, writer) = spawn_slow_writer(Duration::from_millis(300)).await;
    let app = spawn_ingest(&[("INGEST_ROUTE", "grpc"), ("GRPC_WRITER_URL", &url)]).await;
    let requests = 60;
    let posts = (0..requests).map(|i| {
        let app = &app;
        async move {
            let resp = app.post_json(&case_json(&format!("P{i}"), 30)).await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            let body = json(resp).await;
            assert_eq!(body["accepted"], 1);
            (format!("P{i}"), body["ids"][0].as_str().unwrap().to_owned())
        }
    });
    let answered = futures::future::join_all(posts).await;
    let calls = writer.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().sum::<usize>(), requests);
    assert!(
        calls.len() < requests / 2,
        "{} calls for {requests} requests: {calls:?}",
        calls.len()
    );
    assert!(calls.iter().any(|&n| n > 1), "{calls:?}");
    // Every request's id names its own case, stored once.
    let stored: std::collections::HashMap<String, String> = writer
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            let r = Reported::from_event(e).unwrap();
            (r.id, r.case.name.to_string())
        })
        .collect();
    assert_eq!(stored.len(), requests);
    for (name, id) in answered {
        assert_eq!(stored.get(&id), Some(&name));
    }
}

#[tokio::test]
async fn redis_route_appends_to_the_stream() {
    let servers = stack::testing::servers();
    let prefix = format!("{}:", stack::testing::unique("ingest"));
    let app = spawn_ingest(&[
        ("INGEST_ROUTE", "redis"),
        ("REDIS_URL", &servers.redis_url),
        ("REDIS_KEY_PREFIX", &prefix),
    ])
    .await;
    let nd = format!(
        "{}\n{}\n{}",
        case_json("A", 1),
        case_json("B", 2),
        case_json("C", 3)
    );
    let body = json(app.post(Some("application/x-ndjson"), nd).await).await;
    assert_eq!(body["accepted"], 3);

    let mut conn = redis::Client::open(servers.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = store::Keys::new(prefix).stream();
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(&stream).await.unwrap();
    assert_eq!(entries.ids.len(), 3);
    let decoded: Vec<Reported> = entries
        .ids
        .iter()
        .map(|entry| {
            let raw: Vec<u8> = entry.get(events::redis::STREAM_FIELD).unwrap();
            Reported::from_event(&events::redis::decode(&raw).unwrap()).unwrap()
        })
        .collect();
    let ids: Vec<&str> = decoded.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        body["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>()
    );
    assert!(decoded.iter().all(|r| r.traceparent.is_some()));
}

/// Every class of bad input: its status, a JSON error naming the problem,
/// and nothing forwarded.
#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_forwarded() {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("MAX_BODY_BYTES", "4096"),
        ("MAX_BATCH_CASES", "5"),
    ])
    .await;
    let good = case_json("Ok", 30);
    let op = r#"{"name":"A","location":{"$gt":""},"age":3,"infectedtype":"x","state":"y"}"#;
    // (what, content type, body, status, field, index)
    type Bad<'a> = (
        &'a str,
        Option<&'a str>,
        String,
        u16,
        Option<&'a str>,
        Option<u64>,
    );
    let cases: Vec<Bad> = vec![
        (
            "operator object",
            Some("application/json"),
            op.to_owned(),
            400,
            Some("location"),
            None,
        ),
        (
            "negative age",
            Some("application/json"),
            good.replace("30", "-3"),
            400,
            Some("age"),
            None,
        ),
        (
            "fractional age",
            Some("application/json"),
            good.replace("30", "30.5"),
            400,
            Some("age"),
            None,
        ),
        (
            "age as string",
            Some("application/json"),
            good.replace("30", "\"30\""),
            400,
            Some("age"),
            None,
        ),
        (
            "missing field",
            Some("application/json"),
            r#"{"name":"A","location":"L","age":3,"infectedtype":"x"}"#.into(),
            400,
            Some("state"),
            None,
        ),
        (
            "unknown field",
            Some("application/json"),
            good.replace("}", r#","admin":true}"#),
            400,
            Some("admin"),
            None,
        ),
        (
            "empty name",
            Some("application/json"),
            good.replace("\"Ok\"", "\"  \""),
            400,
            Some("name"),
            None,
        ),
        (
            "bad case in a batch",
            Some("application/json"),
            format!("[{good},{good},{}]", good.replace("30", "300")),
            400,
            Some("age"),
            Some(2),
        ),
        (
            "bad ndjson line",
            Some("application/x-ndjson"),
            format!("{good}\n{{\"name\":5}}\n"),
            400,
            Some("name"),
            Some(1),
        ),
        (
            "not JSON",
            Some("application/json"),
            "name=Ana".into(),
            400,
            None,
            None,
        ),
        (
            "empty batch",
            Some("application/json"),
            "[]".into(),
            400,
            None,
            None,
        ),
        (
            "scalar body",
            Some("application/json"),
            "42".into(),
            400,
            None,
            None,
        ),
        (
            "too many cases",
            Some("application/json"),
            format!("[{}]", [good.as_str(); 6].join(",")),
            413,
            None,
            None,
        ),
        (
            "body over the limit",
            Some("application/json"),
            format!("[{}]", vec![good.as_str(); 60].join(",")),
            413,
            None,
            None,
        ),
        (
            "text/plain",
            Some("text/plain"),
            good.clone(),
            415,
            None,
            None,
        ),
        ("no content type", None, good.clone(), 415, None, None),
    ];
    for (what, ct, body, status, field, index) in cases {
        let resp = app.post(ct, body).await;
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let v = json(resp).await;
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error message in {v}"));
        assert!(!msg.is_empty(), "{what}");
        assert_eq!(v["field"].as_str(), field, "{what}: {v}");
        assert_eq!(v["index"].as_u64(), index, "{what}: {v}");
    }
    // Raw invalid UTF-8 bytes, not lossily converted.
    let resp = app
        .post(
            Some("application/json"),
            b"{\"name\":\"\xff\xfe\"}".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(sink.events().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn a_down_next_hop_answers_503_with_retry_after() {
    let closed = stack::free_port().unwrap();
    let redis_url = format!("redis://127.0.0.1:{closed}/");
    let sink_url = format!("http://127.0.0.1:{closed}/");
    let grpc_url = format!("http://127.0.0.1:{closed}");
    for env in [
        vec![("INGEST_ROUTE", "redis"), ("REDIS_URL", redis_url.as_str())],
        vec![("K_SINK", sink_url.as_str())],
        vec![
            ("INGEST_ROUTE", "grpc"),
            ("GRPC_WRITER_URL", grpc_url.as_str()),
        ],
    ] {
        let app = spawn_ingest(&env).await;
        let resp = app.post_json(&case_json("A", 1)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{env:?}");
        assert_eq!(resp.headers()["retry-after"], "1");
        assert!(
            json(resp).await["error"]
                .as_str()
                .unwrap()
                .contains("try again")
        );
        let ready = app
            .client
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap();
        if env[0].0 != "K_SINK" {
            assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "{env:?}");
        }
    }
    // A sink that answers 500 is a down hop too.
    let sink = spawn_sink(StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO).await;
    let app = spawn_ingest(&[("K_SINK", &sink.url)]).await;
    assert_eq!(
        app.post_json(&case_json("A", 1)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// Ingest with its log in a database of its own (the sink answers 200), and
/// a reader of that log.
async fn ingest_with_log(name: &str, revision: &str) -> (SinkServer, TestApp, store::IngestLog) {
    let sink = spawn_sink(StatusCode::OK, Duration::ZERO).await;
    let servers = stack::testing::servers();
    let db = stack::testing::unique(name);
    let app = spawn_ingest(&[
        ("K_SINK", &sink.url),
        ("MONGODB_URI", &servers.mongodb_uri),
        ("MONGODB_DATABASE", &db),
        ("K_REVISION", revision),
    ])
    .await;
    let mongo = store::Mongo::connect_lazy(&store::MongoConfig {
        uri: servers.mongodb_uri.clone(),
        database: db,
    })
    .await
    .unwrap();
    (sink, app, store::IngestLog::new(mongo))
}

/// The log's newest records once `done` holds of them (or after 4 s).
async fn log_when(
    log: &store::IngestLog,
    done: impl Fn(&[store::LogRecord]) -> bool,
) -> Vec<store::LogRecord> {
    let mut records = Vec::new();
    for _ in 0..200 {
        records = log.latest(100).await.unwrap();
        if done(&records) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    records
}

#[tokio::test]
async fn every_request_is_recorded_in_the_ingest_log() {
    let (_sink, app, log) = ingest_with_log("ingestlog", "ingest-00003").await;
    let batch = format!("[{},{}]", case_json("A", 1), case_json("B", 2));
    assert_eq!(app.post_json(&batch).await.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.post_json(r#"{"name":1}"#).await.status(),
        StatusCode::BAD_REQUEST
    );
    let entries = log_when(&log, |r| r.len() == 2).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let accepted = entries.iter().find(|e| e.result == "accepted").unwrap();
    assert_eq!(
        (
            accepted.cases,
            accepted.bytes as usize,
            accepted.path.as_str()
        ),
        (2, batch.len(), "http")
    );
    assert_eq!(accepted.revision, "ingest-00003");
    assert_eq!(accepted.requests, 1);
    let refused = entries.iter().find(|e| e.result == "refused").unwrap();
    assert!(refused.reason.contains("name"), "{refused:?}");
}

#[tokio::test]
async fn the_ingest_log_sums_requests_alike_instead_of_a_record_each() {
    let (_sink, app, log) = ingest_with_log("ingestsum", "ingest-00004").await;
    let requests = 40;
    for i in 0..requests {
        let body = case_json(&format!("P{i}"), 1);
        assert_eq!(app.post_json(&body).await.status(), StatusCode::ACCEPTED);
    }
    let sum = |r: &[store::LogRecord]| {
        r.iter()
            .fold((0, 0), |a, r| (a.0 + r.requests, a.1 + r.cases))
    };
    let records = log_when(&log, |r| sum(r).0 == requests).await;
    assert_eq!(sum(&records), (requests, requests), "{records:?}");
    // One record per second of requests: 40 quick POSTs span a second or two.
    assert!(
        records.len() <= 3,
        "{} records for {requests} requests: {records:?}",
        records.len()
    );
    assert!(
        records.iter().all(|r| r.result == "accepted"),
        "{records:?}"
    );
}
