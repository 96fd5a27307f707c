//! Lists sent to every dashboard stay bounded however many distinct states
//! clients invent: the top states by name, then one "other" entry.

use crate::helpers;

use chrono::Utc;
use events::{Case, Reported, WritePath};
use serde_json::Value;

#[tokio::test]
async fn the_snapshot_lists_the_top_states_and_sums_the_rest_as_other() {
    let e = helpers::env(&[]).await;
    // 40 invented states: state i has i + 1 cases (820 cases in all).
    let reported: Vec<Reported> = (0..40)
        .flat_map(|i| (0..=i).map(move |k| (i, k)))
        .map(|(i, k)| Reported {
            id: Reported::new_id(),
            case: Case::new(
                &format!("Case {i} {k}"),
                &format!("Place {i}"),
                30,
                "communitary",
                &format!("state-{i:02}"),
            )
            .unwrap(),
            time: Utc::now(),
            revision: None,
            traceparent: None,
        })
        .collect();
    let batch = e
        .cases
        .insert(&reported, WritePath::Grpc)
        .await
        .unwrap()
        .batch;
    e.agg.count_batches(&[batch.unwrap()]).await.unwrap();

    for path in ["/api/snapshot", "/api/states"] {
        let body: Value = e
            .http
            .get(format!("{}{path}", e.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let states = body["states"].as_array().unwrap();
        assert_eq!(states.len(), 11, "{path}: ten states and other: {states:?}");
        let names: Vec<&str> = states
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "state-39", "{path}: largest first");
        assert_eq!(names[9], "state-30");
        assert_eq!(
            states[10],
            serde_json::json!({"state": "other", "cases": 820 - (31..=40).sum::<u64>(), "other": true})
        );
        let sum: u64 = states.iter().map(|s| s["cases"].as_u64().unwrap()).sum();
        assert_eq!(sum, 820, "{path}: nothing is lost from the total");
    }
}
