//! What others send aggregate, in-process against the real Redis and
//! MongoDB-compatible server: strings clients invent (a new location or
//! state per case) never become metric series, and a `case.stored` whose
//! carried deltas cannot be read is refused with a 400 naming them.

use std::time::Duration;

use chrono::Utc;
use events::{Case, Reported, StoredBatch, WritePath};
use runtime::Sink;
use store::testing::Stores;

#[tokio::test]
async fn counting_cases_with_invented_locations_and_states_adds_no_metric_series() {
    let stores = Stores::new("client_strings").await;
    let env = stores.env_with(&[("AGGREGATE_FLUSH_MS", "5")]);
    let url = runtime::testing::spawn::<aggregate::Function>(&env)
        .await
        .url;
    let cases = stores.cases();
    let reported: Vec<Reported> = (0..50)
        .map(|i| Reported {
            id: Reported::new_id(),
            case: Case::new(
                "Ana",
                &format!("Invented place {i}"),
                30,
                "communitary",
                &format!("invented-state-{i}"),
            )
            .unwrap(),
            time: Utc::now(),
            revision: Some("ingest-00001".into()),
            traceparent: None,
        })
        .collect();
    let outcome = cases.insert(&reported, WritePath::Grpc).await.unwrap();
    let event = StoredBatch {
        batch: outcome.batch.expect("new cases make a batch"),
        cases: outcome.stored.len() as u64,
        // Odd client strings travel in the carried deltas too.
        record: outcome
            .carried
            .as_deref()
            .map(store::batch::Carried::encode),
    }
    .to_event("/test", None);
    Sink::new(&format!("{url}/"), &[])
        .send_with_retry(&event, None, Duration::from_secs(10))
        .await
        .expect("aggregate counts the batch");

    let http = stack::testing::http_client();
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("aggregate_cases_counted_total"),
        "the cases were counted: {metrics}"
    );
    let invented: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("Invented place") || l.contains("invented-state"))
        .collect();
    assert!(
        invented.is_empty(),
        "client strings became series: {invented:#?}"
    );
}

#[tokio::test]
async fn carried_deltas_that_cannot_be_read_are_a_400_naming_them() {
    let stores = Stores::new("carried_junk").await;
    let url = runtime::testing::spawn::<aggregate::Function>(&stores.env())
        .await
        .url;
    let http = stack::testing::http_client();
    for (record, says) in [
        ("%%% not base64", "not standard base64"),
        ("AAAA", "not a BSON document"),
    ] {
        let response = http
            .post(format!("{url}/"))
            .header("ce-specversion", "1.0")
            .header("ce-id", "stored-b-junk")
            .header("ce-source", "/test")
            .header("ce-type", events::types::CASE_STORED)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"batch": "b-junk", "cases": 1, "record": "{record}"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{record:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(says), "{record:?}: {body}");
    }
}
