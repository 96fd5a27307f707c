//! redis-sub's push mode behind eventing-redis' RedisStreamSource, fed by
//! the adapter's own behaviour and wire format (`common::stream_source`).

use crate::common;

use std::time::Duration;

use common::stream_source::{Delivery, StreamSource};
use common::*;
use events::{Case, Reported};

async fn xlen(e: &mut Env) -> u64 {
    redis::cmd("XLEN")
        .arg(e.keys.stream())
        .query_async(&mut e.redis)
        .await
        .unwrap()
}

fn push_mode() -> [(&'static str, &'static str); 3] {
    [
        ("STREAM_CONSUMER", "false"),
        ("RECONCILE_AFTER_MS", "500"),
        ("RECONCILE_INTERVAL_MS", "100"),
    ]
}

#[tokio::test]
async fn the_stream_sources_deliveries_are_stored_and_deleted_from_the_stream() {
    let mut e = env().await;
    // Slow reconciling: every case here must come through the deliveries.
    let sub = spawn(
        &e.env,
        &[
            ("STREAM_CONSUMER", "false"),
            ("RECONCILE_AFTER_MS", "600000"),
        ],
    )
    .await;
    let redis_url = e.env["REDIS_URL"].clone();
    let mut source =
        StreamSource::start(e.redis.clone(), &redis_url, &e.keys.stream(), &sub.url).await;
    let mut batch: Vec<Reported> = (0..6).map(reported).collect();
    // Go's JSON escapes these (\u003c, \u0026, \u2028): still the same case.
    batch[0].case = Case::new("<Ana & José>\u{2028}", "Quiché", 40, "imported", "active").unwrap();
    for r in &batch {
        xadd(&mut e.redis, &e.keys, r).await;
    }
    let deliveries = source.drain().await;
    assert_eq!(deliveries, vec![Delivery::Answered(202); 6]);
    assert_eq!(e.cases.count(None).await.unwrap(), 6);
    assert_eq!(stored(&e.cases).await[&batch[0].id].case, batch[0].case);
    assert_eq!(xlen(&mut e).await, 0, "each stored entry is deleted (XDEL)");
    // A redelivery of a deleted entry (the adapter's retry) stores nothing twice.
    xadd(&mut e.redis, &e.keys, &batch[1]).await;
    assert_eq!(source.drain().await, vec![Delivery::Answered(202)]);
    assert_eq!(e.cases.count(None).await.unwrap(), 6);
    source.shut_down().await;
    sub.stop().await;
}

#[tokio::test]
async fn no_case_is_lost_across_a_push_mode_restart_with_entries_added_meanwhile() {
    let mut e = env().await;
    let redis_url = e.env["REDIS_URL"].clone();
    let sub = spawn(&e.env, &push_mode()).await;
    let mut source =
        StreamSource::start(e.redis.clone(), &redis_url, &e.keys.stream(), &sub.url).await;
    let cases: Vec<Reported> = (0..20).map(reported).collect();
    for r in &cases[0..5] {
        xadd(&mut e.redis, &e.keys, r).await;
    }
    assert_eq!(source.drain().await, vec![Delivery::Answered(202); 5]);

    // redis-sub restarts (a new revision, a scale from zero). The source
    // still delivers meanwhile, gets no answer, and acknowledges anyway.
    sub.stop().await;
    for r in &cases[5..10] {
        xadd(&mut e.redis, &e.keys, r).await;
    }
    assert_eq!(source.drain().await, vec![Delivery::Unreachable; 5]);
    // Then the source restarts too: it destroys its group, and re-creates
    // it at `$`, so what is added while it is down is never delivered.
    source.shut_down().await;
    for r in &cases[10..15] {
        xadd(&mut e.redis, &e.keys, r).await;
    }
    let sub = spawn(&e.env, &push_mode()).await;
    let mut source =
        StreamSource::start(e.redis.clone(), &redis_url, &e.keys.stream(), &sub.url).await;
    for r in &cases[15..20] {
        xadd(&mut e.redis, &e.keys, r).await;
    }
    assert_eq!(source.drain().await, vec![Delivery::Answered(202); 5]);

    // The reconciling pass stores the 10 the source never got through.
    wait_stored(&e.cases, 20, Duration::from_secs(15)).await;
    let all = stored(&e.cases).await;
    for r in &cases {
        assert!(all.contains_key(&r.id), "case {} stored", r.id);
    }
    assert_eq!(e.cases.count(None).await.unwrap(), 20, "each stored once");
    assert_eq!(xlen(&mut e).await, 0, "the stream is emptied");
    // Nothing the source still holds pending points at a deleted entry.
    source.shut_down().await;
    sub.stop().await;
}

#[tokio::test]
async fn a_delivery_that_does_not_match_the_streams_entry_changes_nothing() {
    let mut e = env().await;
    let sub = spawn(
        &e.env,
        &[
            ("STREAM_CONSUMER", "false"),
            ("RECONCILE_AFTER_MS", "600000"),
        ],
    )
    .await;
    let real = reported(1);
    xadd(&mut e.redis, &e.keys, &real).await;
    let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(e.keys.stream())
        .arg("-")
        .arg("+")
        .query_async(&mut e.redis)
        .await
        .unwrap();
    let id = r.ids[0].id.clone();
    let forged = reported(2);
    let body = common::stream_source::go_json_marshal(&[
        &b"ce"[..],
        &events::redis::encode(&forged.to_event("/x")),
    ]);
    let http = stack::testing::http_client();
    let post = |id: &str, source: String, body: String| {
        http.post(format!("{}/", sub.url))
            .header("ce-id", id)
            .header("ce-source", source)
            .header("ce-specversion", "1.0")
            .header("ce-type", "dev.knative.sources.redisstream")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let source = format!(
        "{}/{}",
        e.env["REDIS_URL"].trim_end_matches('/'),
        e.keys.stream()
    );
    // Another entry's payload under this id: 409, nothing stored or deleted.
    let resp = post(&id, source.clone(), body.clone()).await.unwrap();
    assert_eq!(resp.status(), 409);
    // Another stream, a non-entry id, data that is not field/value pairs: 400.
    for (id, source, body) in [
        (
            id.as_str(),
            "redis://r:6379/other:stream".to_owned(),
            body.clone(),
        ),
        ("not-an-id", source.clone(), body.clone()),
        (id.as_str(), source.clone(), "[\"ce\"]".to_owned()),
        (id.as_str(), source.clone(), "{\"ce\":1}".to_owned()),
    ] {
        let resp = post(id, source, body).await.unwrap();
        assert_eq!(resp.status(), 400);
        let err: serde_json::Value = resp.json().await.unwrap();
        assert!(!err["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(e.cases.count(None).await.unwrap(), 0);
    assert_eq!(xlen(&mut e).await, 1, "the real entry is still there");
    sub.stop().await;
}
