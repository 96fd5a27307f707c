//! The event model across a canary: a newer ingest may add a field to the
//! case of `case.reported.v1`; an older redis-sub must still store every case
//! it sends, on every Redis path (README: "How the event model evolves").

use crate::common;

use std::time::Duration;

use common::stream_source::{Delivery, StreamSource};
use common::*;
use events::Reported;

/// `r` as a newer ingest would send it: the case carries a field this build
/// does not know.
fn from_a_newer_ingest(r: &Reported) -> events::Event {
    let mut event = r.to_event("/covid-realtime/ingest-redis");
    let mut data = serde_json::to_value(&r.case).unwrap();
    data["vaccinated"] = serde_json::json!(true);
    event.set_data("application/json", data);
    event
}

async fn xadd_event(e: &mut Env, event: &events::Event) {
    let _: String = redis::cmd("XADD")
        .arg(e.keys.stream())
        .arg("*")
        .arg(events::redis::STREAM_FIELD)
        .arg(events::redis::encode(event))
        .query_async(&mut e.redis)
        .await
        .unwrap();
}

async fn dead_letters(e: &mut Env) -> u64 {
    redis::cmd("XLEN")
        .arg(e.keys.dead_letters())
        .query_async(&mut e.redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_case_with_a_field_added_by_a_newer_ingest_is_stored_through_the_stream() {
    let mut e = env().await;
    let sub = spawn(&e.env, &[]).await;
    let cases: Vec<Reported> = (0..3).map(reported).collect();
    for r in &cases {
        xadd_event(&mut e, &from_a_newer_ingest(r)).await;
    }
    wait_stored(&e.cases, 3, Duration::from_secs(15)).await;
    let all = stored(&e.cases).await;
    for r in &cases {
        assert_eq!(all[&r.id].case, r.case);
    }
    assert_eq!(dead_letters(&mut e).await, 0);
    sub.stop().await;
}

#[tokio::test]
async fn a_case_with_a_field_added_by_a_newer_ingest_is_stored_through_post() {
    let mut e = env().await;
    let sub = spawn(
        &e.env,
        &[
            ("STREAM_CONSUMER", "false"),
            ("RECONCILE_AFTER_MS", "600000"),
        ],
    )
    .await;
    // Pushed as a case.reported event (a Broker or SinkBinding delivery).
    let direct = reported(1);
    let resp = events::http::binary_request(
        &stack::testing::http_client(),
        &format!("{}/", sub.url),
        from_a_newer_ingest(&direct),
        &[],
    )
    .unwrap()
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 202);
    // Pushed by the RedisStreamSource, in its own envelope.
    let redis_url = e.env["REDIS_URL"].clone();
    let mut source =
        StreamSource::start(e.redis.clone(), &redis_url, &e.keys.stream(), &sub.url).await;
    let sourced = reported(2);
    xadd_event(&mut e, &from_a_newer_ingest(&sourced)).await;
    assert_eq!(source.drain().await, vec![Delivery::Answered(202)]);
    let all = stored(&e.cases).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[&direct.id].case, direct.case);
    assert_eq!(all[&sourced.id].case, sourced.case);
    assert_eq!(dead_letters(&mut e).await, 0);
    source.shut_down().await;
    sub.stop().await;
}
