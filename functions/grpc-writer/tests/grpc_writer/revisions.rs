//! Revisions that cannot be field names, Redis fields or labels are refused
//! where grpc-writer receives them, so counting never stalls on them:
//! grpc-writer and aggregate run in-process against the real Redis and
//! MongoDB-compatible server.

use crate::helpers;

use chrono::Utc;
use events::proto::writer::case_writer_client::CaseWriterClient;
use events::proto::writer::{WriteRequest, WriteStatus};
use events::{Case, Reported};

fn reported(name: &str, revision: &str) -> Reported {
    Reported {
        id: Reported::new_id(),
        case: Case::new(name, "Escuintla", 30, "communitary", "active").unwrap(),
        time: Utc::now(),
        revision: Some(revision.to_owned()),
        traceparent: None,
    }
}

#[tokio::test]
async fn events_with_unusable_revisions_are_rejected_and_counting_keeps_up_with_the_documents() {
    let p = helpers::start("revisions").await;
    let mut client = CaseWriterClient::connect(p.writer.clone()).await.unwrap();

    let poison = [
        reported("Eva", ""),
        reported("Juan", "bad\u{0}rev"),
        reported("Rosa", "a.b$c"),
    ];
    let events = poison
        .iter()
        .map(|r| events::proto::to_proto(&r.to_event("/test")))
        .collect();
    let results = client
        .write(WriteRequest { events })
        .await
        .unwrap()
        .into_inner()
        .results;
    for r in &results {
        assert_eq!(r.status, WriteStatus::Rejected as i32, "{r:?}");
        assert!(
            r.error.contains("revision"),
            "the error names the revision: {r:?}"
        );
    }

    let good: Vec<Reported> = (0..5)
        .map(|i| reported(&format!("Ana {i}"), "ingest-00001"))
        .collect();
    let events = good
        .iter()
        .map(|r| events::proto::to_proto(&r.to_event("/test")))
        .collect();
    let results = client
        .write(WriteRequest { events })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| r.status == WriteStatus::Stored as i32),
        "{results:?}"
    );

    p.wait_stored_and_counted(5).await;
}
