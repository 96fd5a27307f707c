//! redis-sub against real Redis and the MongoDB-compatible server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use events::redis::Keys;
use events::{Case, Reported, WritePath};
use runtime::{App, Config};
use store::{CaseStore, Mongo, MongoConfig};

struct Env {
    keys: Keys,
    env: HashMap<String, String>,
    redis: redis::aio::ConnectionManager,
    cases: CaseStore,
}

async fn env() -> Env {
    let s = stack::testing::servers();
    let prefix = format!("{}:", stack::testing::unique("sub"));
    let db = stack::testing::unique("sub");
    let env: HashMap<String, String> = [
        ("REDIS_URL", s.redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("MONGODB_URI", s.mongodb_uri.as_str()),
        ("MONGODB_DATABASE", db.as_str()),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: db,
    })
    .await
    .unwrap();
    Env {
        keys: Keys::new(prefix),
        env,
        redis: runtime::redis::connect_lazy(&s.redis_url).unwrap(),
        cases: CaseStore::new(mongo),
    }
}

async fn spawn(
    env: &HashMap<String, String>,
    extra: &[(&str, &str)],
) -> (String, runtime::Context) {
    let mut env = env.clone();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lookup = move |k: &str| env.get(k).cloned();
    let config = redis_sub::SubConfig::from_lookup(&lookup).unwrap();
    let app = App::build(Config::from_lookup("redis-sub", &lookup).unwrap(), |ctx| {
        redis_sub::routes_with(ctx, config)
    })
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let ctx = app.context().clone();
    tokio::spawn(app.run_until_stopped());
    (url, ctx)
}

fn reported(i: usize) -> Reported {
    Reported {
        id: Reported::new_id(),
        case: Case::new(&format!("C{i}"), "Retalhuleu", 33, "communitary", "active").unwrap(),
        time: chrono::Utc::now(),
        revision: Some("ingest-redis-00001".into()),
        traceparent: None,
    }
}

async fn xadd(conn: &mut redis::aio::ConnectionManager, keys: &Keys, r: &Reported) {
    let _: String = redis::cmd("XADD")
        .arg(keys.stream())
        .arg("*")
        .arg(events::redis::STREAM_FIELD)
        .arg(events::redis::encode(&r.to_event("/test")))
        .query_async(conn)
        .await
        .unwrap();
}

async fn wait_stored(cases: &CaseStore, n: u64, within: Duration) {
    let start = Instant::now();
    while cases.count(Some(WritePath::Redis)).await.unwrap() < n {
        assert!(
            start.elapsed() < within,
            "only {} of {n} stored",
            cases.count(None).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    let (_, a) = spawn(&e.env, &[("CONSUMER_NAME", "a"), ("CLAIM_IDLE_MS", "300")]).await;
    let (_, b) = spawn(&e.env, &[("CONSUMER_NAME", "b"), ("CLAIM_IDLE_MS", "300")]).await;
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
    a.shutdown.cancel();
    b.shutdown.cancel();
}

#[tokio::test]
async fn the_http_push_form_stores_a_case_event_once() {
    let e = env().await;
    let (url, ctx) = spawn(&e.env, &[("STREAM_CONSUMER", "false")]).await;
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
    ctx.shutdown.cancel();
}
