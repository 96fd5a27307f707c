//! redis-sub against real Redis and the MongoDB-compatible server.

use crate::common;

use std::time::Duration;

use common::*;
use events::Reported;

#[tokio::test]
async fn entries_left_pending_by_a_crashed_consumer_are_claimed_and_stored_once() {
    let mut e = env().await;
    let group = e.keys.consumer_group();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(e.keys.stream())
        .arg(&group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut e.redis)
        .await
        .unwrap();
    let batch: Vec<Reported> = (0..10).map(reported).collect();
    for r in &batch {
        xadd(&mut e.redis, &e.keys, r).await;
    }
    // A consumer reads them and dies before storing or acknowledging.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&group)
        .arg("crashed")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(e.keys.stream())
        .arg(">")
        .query_async(&mut e.redis)
        .await
        .unwrap();
    let (pending, ..): (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(e.keys.stream())
        .arg(&group)
        .query_async(&mut e.redis)
        .await
        .unwrap();
    assert_eq!(pending, 10);

    // Two live consumers (Knative scaled out): the idle entries are claimed and stored once.
    let a = spawn(&e.env, &[("CONSUMER_NAME", "a"), ("CLAIM_IDLE_MS", "300")]).await;
    let b = spawn(&e.env, &[("CONSUMER_NAME", "b"), ("CLAIM_IDLE_MS", "300")]).await;
    wait_stored(&e.cases, 10, Duration::from_secs(15)).await;
    // New entries meanwhile are stored once too, whichever consumer reads them.
    let more: Vec<Reported> = (10..40).map(reported).collect();
    for r in &more {
        xadd(&mut e.redis, &e.keys, r).await;
    }
    wait_stored(&e.cases, 40, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        e.cases.count(None).await.unwrap(),
        40,
        "each entry stored exactly once"
    );
    let (pending, ..): (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(e.keys.stream())
        .arg(&group)
        .query_async(&mut e.redis)
        .await
        .unwrap();
    assert_eq!(pending, 0, "everything acknowledged");
    let len: u64 = redis::cmd("XLEN")
        .arg(e.keys.stream())
        .query_async(&mut e.redis)
        .await
        .unwrap();
    assert_eq!(
        len, 0,
        "stored entries are deleted: the stream stays bounded"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_http_push_form_stores_a_case_event_once() {
    let e = env().await;
    let sub = spawn(&e.env, &[("STREAM_CONSUMER", "false")]).await;
    let url = sub.url.clone();
    let http = stack::testing::http_client();
    let r = reported(1);
    for _ in 0..2 {
        let resp = events::http::binary_request(
            &http,
            &format!("{url}/"),
            r.to_event("/redis-stream-source"),
            &[],
        )
        .unwrap()
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 202);
    }
    assert_eq!(e.cases.count(None).await.unwrap(), 1);
    // Not a case event: 400 naming the problem, nothing stored.
    let wrong = events::StatsUpdated { total: 1, at_ms: 0 }.to_event("/x");
    let resp = events::http::binary_request(&http, &format!("{url}/"), wrong, &[])
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unexpected CloudEvent type")
    );
    // No ce-id: not a CloudEvent at all.
    let resp = http
        .post(format!("{url}/"))
        .header("ce-specversion", "1.0")
        .header("ce-type", "x")
        .header("ce-source", "/x")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(e.cases.count(None).await.unwrap(), 1);
    sub.stop().await;
}
