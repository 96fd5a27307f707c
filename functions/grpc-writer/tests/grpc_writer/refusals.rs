//! A refusal from grpc-writer means nothing was stored: a request is
//! stored whole or not at all, and a write that cannot commit before the
//! caller's deadline (`grpc-timeout`) is answered DEADLINE_EXCEEDED and
//! never committed, even when MongoDB stops answering mid-write. Runs
//! against its own MongoDB-compatible server, which the test freezes.

use std::time::Duration;

use chrono::Utc;
use events::proto::writer::case_writer_client::CaseWriterClient;
use events::proto::writer::{WriteRequest, WriteStatus};
use events::{Case, Reported, WritePath};
use stack::MongoServer;
use store::{CaseStore, Mongo, MongoConfig};

fn event(name: &str) -> events::proto::ce::CloudEvent {
    let r = Reported {
        id: Reported::new_id(),
        case: Case::new(name, "Retalhuleu", 40, "communitary", "active").unwrap(),
        time: Utc::now(),
        revision: Some("ingest-00001".into()),
        traceparent: None,
    };
    events::proto::to_proto(&r.to_event("/ingest"))
}

#[tokio::test]
async fn a_refused_write_stores_nothing_whole_request_or_past_the_callers_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mongo = MongoServer::start(dir.path()).unwrap();
    let uri = mongo.uri();
    let env = [
        ("MONGODB_URI", uri.as_str()),
        ("MONGODB_DATABASE", "writer"),
    ];
    let url = runtime::testing::spawn::<grpc_writer::Function>(&env)
        .await
        .url;
    let cases = CaseStore::new(
        Mongo::connect_lazy(&MongoConfig {
            uri: mongo.uri(),
            database: "writer".into(),
        })
        .await
        .unwrap(),
    );
    let mut client = CaseWriterClient::connect(url).await.unwrap();
    let first = client
        .write(WriteRequest {
            events: vec![event("Stored")],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(first[0].status, WriteStatus::Stored as i32);

    // One invalid event: the valid one beside it is not stored either.
    let mut bad = event("Bad");
    bad.spec_version = "0.3".into();
    let results = client
        .write(WriteRequest {
            events: vec![event("Beside"), bad],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| r.status == WriteStatus::Rejected as i32),
        "{results:?}"
    );
    assert!(results[0].error.contains("same request"), "{results:?}");

    // MongoDB stops answering; the caller gives the write one second.
    let pid = mongo.pid().unwrap();
    stack::process::send_signal(pid, libc::SIGSTOP).unwrap();
    let mut req = tonic::Request::new(WriteRequest {
        events: vec![event("Late 1"), event("Late 2")],
    });
    req.set_timeout(Duration::from_secs(1));
    let answer = client.write(req).await;
    stack::process::send_signal(pid, libc::SIGCONT).unwrap();
    let status = answer.expect_err("nothing could be committed");
    assert_eq!(
        status.code(),
        tonic::Code::DeadlineExceeded,
        "the writer answered before the caller gave up: {status:?}"
    );
    assert!(
        status.message().contains("nothing was stored"),
        "{status:?}"
    );

    // After MongoDB wakes, nothing of the refused writes appears.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cases.count(Some(WritePath::Grpc)).await.unwrap(), 1);
}
