//! Strings clients invent (a new location or state per case) never become
//! metric series: aggregate runs in-process against the real Redis and
//! MongoDB-compatible server and counts cases with distinct locations and
//! states, then its `/metrics` is read.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use events::{Case, Reported, StoredBatch, WritePath};
use runtime::{App, Config, Sink};
use store::{CaseStore, Mongo, MongoConfig};

#[tokio::test]
async fn counting_cases_with_invented_locations_and_states_adds_no_metric_series() {
    let s = stack::testing::servers();
    let db = stack::testing::unique("client_strings");
    let env: HashMap<String, String> = [
        ("REDIS_URL", s.redis_url.clone()),
        (
            "REDIS_KEY_PREFIX",
            format!("{}:", stack::testing::unique("client_strings")),
        ),
        ("MONGODB_URI", s.mongodb_uri.clone()),
        ("MONGODB_DATABASE", db.clone()),
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("AGGREGATE_FLUSH_MS", "5".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let lookup = move |k: &str| env.get(k).cloned();
    let config = aggregate::AggregateConfig::from_lookup(&lookup).unwrap();
    let app = App::build(Config::from_lookup("aggregate", &lookup).unwrap(), |ctx| {
        aggregate::routes_with(ctx, config)
    })
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let cases = CaseStore::new(
        Mongo::connect_lazy(&MongoConfig {
            uri: s.mongodb_uri.clone(),
            database: db,
        })
        .await
        .unwrap(),
    );
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
