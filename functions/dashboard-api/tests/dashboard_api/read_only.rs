//! dashboard-api is read-only: every write method on its API paths is
//! refused and changes nothing, with or without the internal token
//! configured; reads stay public either way.

use crate::helpers;

use events::{Case, Reported, WritePath};
use helpers::{Env, env};

const PATHS: [&str; 11] = [
    "/api/snapshot",
    "/api/summary",
    "/api/areas/top",
    "/api/states",
    "/api/cases/recent",
    "/api/ages",
    "/api/cases",
    "/api/ingest-log",
    "/api/stream",
    "/api/no-such-endpoint",
    "/api/cases?after=0&limit=1",
];

/// One stored, counted case, and what the API says about it.
async fn seeded(e: &Env) -> serde_json::Value {
    let r = Reported {
        id: Reported::new_id(),
        case: Case::new("Lucía", "Cobán", 29, "communitary", "active").unwrap(),
        time: chrono::Utc::now(),
        revision: Some("ingest-grpc-00001".into()),
        traceparent: None,
    };
    let batch = e
        .cases
        .insert(std::slice::from_ref(&r), WritePath::Grpc)
        .await
        .unwrap()
        .batch;
    e.agg.count_batches(&[batch.unwrap()]).await.unwrap();
    reqwest::get(format!("{}/api/summary", e.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every write method on every API path, with a body that would be a case
/// (or an operator) if anything read it.
async fn try_every_write(e: &Env, allowed_statuses: &[u16]) {
    let http = stack::testing::http_client();
    for path in PATHS {
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
        ] {
            let resp = http
                .request(method.clone(), format!("{}{path}", e.url))
                .header("content-type", "application/json")
                .body(r#"{"name":"X","location":{"$gt":""},"age":1,"infectedtype":"x","state":"y","total":0}"#)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                allowed_statuses.contains(&status),
                "{method} {path}: {status}"
            );
        }
    }
}

#[tokio::test]
async fn write_methods_get_405_and_change_nothing() {
    let e = env(&[]).await;
    let before = seeded(&e).await;
    try_every_write(&e, &[405]).await;
    assert_eq!(e.cases.count(None).await.unwrap(), 1);
    let after: serde_json::Value = reqwest::get(format!("{}/api/summary", e.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["total"], before["total"]);
    assert_eq!(after["by_path"], before["by_path"]);
}

#[tokio::test]
async fn with_the_internal_token_set_writes_are_refused_and_reads_stay_public() {
    let e = env(&[("INTERNAL_TOKEN", "dashboard-internal-token-0123456789")]).await;
    let before = seeded(&e).await;
    // Unauthenticated writes are refused before routing (401), like on every function.
    try_every_write(&e, &[401, 405]).await;
    assert_eq!(e.cases.count(None).await.unwrap(), 1);
    for path in ["/api/summary", "/api/cases?limit=1", "/healthz"] {
        let resp = reqwest::get(format!("{}{path}", e.url)).await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path} needs no token");
    }
    let after: serde_json::Value = reqwest::get(format!("{}/api/summary", e.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["total"], before["total"]);
}
