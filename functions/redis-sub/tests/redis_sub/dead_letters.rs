//! Dead letters keep what they need to be replayed (the raw payload and the
//! reason), and `redis-sub replay-dead-letters` puts them back once this
//! build reads them.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use events::cloudevents::AttributesWriter;
use redis::streams::StreamRangeReply;

async fn range(redis: &mut redis::aio::ConnectionManager, key: String) -> StreamRangeReply {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(redis)
        .await
        .unwrap()
}

fn field(entry: &redis::streams::StreamId, name: &str) -> Option<Vec<u8>> {
    entry.get(name)
}

async fn xadd_raw(e: &mut Env, payload: &[u8]) -> String {
    redis::cmd("XADD")
        .arg(e.keys.stream())
        .arg("*")
        .arg(events::redis::STREAM_FIELD)
        .arg(payload)
        .query_async(&mut e.redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_undecodable_entry_is_dead_lettered_with_its_payload_and_reason() {
    let mut e = env().await;
    let sub = spawn(&e.env, &[]).await;
    let good = reported(1);
    // A later version of the event, and bytes that are not an event at all.
    let mut v2 = reported(2).to_event("/covid-realtime/ingest-redis");
    v2.set_type("io.covidrealtime.case.reported.v2");
    let v2_payload = events::redis::encode(&v2);
    let v2_id = xadd_raw(&mut e, &v2_payload).await;
    let junk_id = xadd_raw(&mut e, b"\xff not json").await;
    xadd(&mut e.redis, &e.keys, &good).await;
    wait_stored(&e.cases, 1, Duration::from_secs(15)).await;
    let start = Instant::now();
    let dead = loop {
        let dead = range(&mut e.redis, e.keys.dead_letters()).await;
        if dead.ids.len() == 2 {
            break dead;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{dead:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_entry: HashMap<Vec<u8>, &redis::streams::StreamId> = dead
        .ids
        .iter()
        .map(|d| (field(d, "entry").unwrap(), d))
        .collect();
    let v2_dead = by_entry[v2_id.as_bytes()];
    assert_eq!(
        field(v2_dead, "ce").unwrap(),
        v2_payload,
        "the raw payload is kept"
    );
    let reason = String::from_utf8(field(v2_dead, "error").unwrap()).unwrap();
    assert!(reason.contains("case.reported.v2"), "{reason}");
    let junk_dead = by_entry[junk_id.as_bytes()];
    assert_eq!(field(junk_dead, "ce").unwrap(), b"\xff not json");
    assert!(!field(junk_dead, "error").unwrap().is_empty());
    assert!(range(&mut e.redis, e.keys.stream()).await.ids.is_empty());
    sub.stop().await;
}

#[tokio::test]
async fn replay_dead_letters_puts_back_what_this_build_reads_and_keeps_the_rest() {
    let mut e = env().await;
    let sub = spawn(&e.env, &[]).await;
    // Dead letters as an older, strict redis-sub left them: a case with a
    // field a newer ingest added (this build reads it), and junk.
    let fixed = reported(1);
    let mut event = fixed.to_event("/covid-realtime/ingest-redis");
    let mut data = serde_json::to_value(&fixed.case).unwrap();
    data["vaccinated"] = serde_json::json!(true);
    event.set_data("application/json", data);
    for (entry, payload) in [
        ("1-1", events::redis::encode(&event)),
        ("1-2", b"not json".to_vec()),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(e.keys.dead_letters())
            .arg("*")
            .arg("entry")
            .arg(entry)
            .arg("error")
            .arg("unknown field `vaccinated`")
            .arg("ce")
            .arg(payload)
            .query_async(&mut e.redis)
            .await
            .unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_redis-sub"))
        .arg("replay-dead-letters")
        .env("REDIS_URL", &e.env["REDIS_URL"])
        .env("REDIS_KEY_PREFIX", e.keys.prefix())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("replayed 1 dead letters"), "{stdout}");
    assert!(stdout.contains("still refused"), "{stdout}");
    wait_stored(&e.cases, 1, Duration::from_secs(15)).await;
    assert_eq!(stored(&e.cases).await[&fixed.id].case, fixed.case);
    let left = range(&mut e.redis, e.keys.dead_letters()).await;
    assert_eq!(left.ids.len(), 1, "what this build still refuses is kept");
    assert_eq!(field(&left.ids[0], "ce").unwrap(), b"not json");
    // A second replay changes nothing and stores nothing twice.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_redis-sub"))
        .arg("replay-dead-letters")
        .env("REDIS_URL", &e.env["REDIS_URL"])
        .env("REDIS_KEY_PREFIX", e.keys.prefix())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("replayed 0 dead letters"));
    assert_eq!(e.cases.count(None).await.unwrap(), 1);
    sub.stop().await;
}
