//! Live streams are public, so they are capped: past `SSE_MAX_CLIENTS` a
//! new one gets `503` with `Retry-After`, and a closed one frees its slot.

use crate::helpers;

use std::time::{Duration, Instant};

#[tokio::test]
async fn streams_past_the_cap_get_503_and_a_closed_stream_frees_its_slot() {
    let e = helpers::env(&[("SSE_MAX_CLIENTS", "2")]).await;
    let url = format!("{}/api/stream", e.url);
    let open = || async { e.http.get(&url).send().await.unwrap() };
    let first = open().await;
    let second = open().await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let refused = open().await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("SSE_MAX_CLIENTS"),
        "{body}"
    );
    drop(first);
    // The server notices the closed stream at its next write or keep-alive.
    let start = Instant::now();
    loop {
        let again = open().await;
        if again.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
