//! redis-sub's receivers driven with arbitrary input, against the real
//! servers: Stream entries (read by its own consumer group, or its
//! reconciling pass in push mode, and at the same time pushed by the
//! RedisStreamSource's adapter in its wire format) and
//! `POST /`, with valid cases, cases a newer ingest extended, repeats,
//! refusable cases, other event types, raw bytes and oversized bodies.
//! Whatever arrives: no panic (the function still answers), every valid
//! case is stored exactly once and nothing else is, every unreadable entry
//! is dead-lettered exactly once, and nothing is left behind (the Stream and
//! the pending lists end empty, bodies past `MAX_BODY_BYTES` get 413).

use crate::common;

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::stream_source::{Delivery, StreamSource};
use common::*;
use events::{Case, Event, Reported, StatsUpdated};
use proptest::prelude::*;

const MAX_BODY_BYTES: usize = 16 * 1024;

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

#[derive(Debug, Clone)]
enum Payload {
    /// A valid case; `extra` adds a field a newer ingest might send.
    Valid { case: Case, extra: bool },
    /// The same event as an earlier valid one (a redelivery).
    Again(usize),
    /// A `case.reported` event whose case must be refused.
    BadCase(serde_json::Value),
    /// A well-formed event of another type.
    OtherType,
    /// Any bytes.
    Junk(Vec<u8>),
    /// A case event past `MAX_BODY_BYTES`.
    Huge,
}

#[derive(Debug, Clone, Copy)]
enum Route {
    /// XADD to the Stream.
    Stream,
    /// `POST /` as a `case.reported` event in binary mode.
    Post,
    /// `POST /` in the adapter's envelope, under an id the Stream does not hold.
    ForgedDelivery,
}

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z\u{e0}-\u{ff}<>&' ]{0,12}[A-Za-z\u{e0}-\u{ff}]"
}

fn case() -> impl Strategy<Value = Case> {
    (text(), text(), 0..=130i64, text(), text())
        .prop_map(|(n, l, a, i, s)| Case::new(&n, &l, a, &i, &s).unwrap())
}

fn bad_case() -> impl Strategy<Value = serde_json::Value> {
    let good = serde_json::json!({"name": "A", "location": "L", "age": 3,
        "infectedtype": "x", "state": "y"});
    prop_oneof![
        (131..100_000i64).prop_map(|a| serde_json::json!(a)),
        Just(serde_json::json!("  ")),
        Just(serde_json::json!({"$gt": ""})),
        Just(serde_json::json!("x".repeat(201))),
        Just(serde_json::json!(null)),
    ]
    .prop_flat_map(move |bad| {
        let good = good.clone();
        prop::sample::select(vec!["name", "location", "age", "state"]).prop_map(move |field| {
            let mut c = good.clone();
            c[field] = bad.clone();
            c
        })
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        6 => (case(), any::<bool>()).prop_map(|(case, extra)| Payload::Valid { case, extra }),
        2 => any::<usize>().prop_map(Payload::Again),
        2 => bad_case().prop_map(Payload::BadCase),
        1 => Just(Payload::OtherType),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Payload::Junk),
        1 => Just(Payload::Huge),
    ]
}

fn route() -> impl Strategy<Value = Route> {
    prop_oneof![3 => Just(Route::Stream), 3 => Just(Route::Post), 1 => Just(Route::ForgedDelivery)]
}

fn case_event(id: &str, data: serde_json::Value) -> Event {
    let mut r = reported(0);
    r.id = id.to_owned();
    let mut e = r.to_event("/covid-realtime/ingest-redis");
    e.set_data("application/json", data);
    e
}

/// What one input is, as bytes and as an event, and whether it is a case
/// to store (and under which id).
struct Prepared {
    event: Option<Event>,
    bytes: Vec<u8>,
    valid_id: Option<String>,
}

fn prepare(p: &Payload, earlier: &[(String, Event)]) -> Prepared {
    let of = |event: Event, valid_id: Option<String>| Prepared {
        bytes: events::redis::encode(&event),
        event: Some(event),
        valid_id,
    };
    match p {
        Payload::Valid { case, extra } => {
            let id = Reported::new_id();
            let mut data = serde_json::to_value(case).unwrap();
            if *extra {
                data["vaccinated"] = serde_json::json!(true);
            }
            of(case_event(&id, data), Some(id))
        }
        Payload::Again(i) if !earlier.is_empty() => {
            let (id, event) = &earlier[i % earlier.len()];
            of(event.clone(), Some(id.clone()))
        }
        Payload::Again(_) | Payload::OtherType => {
            of(StatsUpdated { total: 1, at_ms: 0 }.to_event("/x"), None)
        }
        Payload::BadCase(data) => of(case_event(&Reported::new_id(), data.clone()), None),
        Payload::Junk(bytes) => Prepared {
            event: None,
            bytes: bytes.clone(),
            valid_id: None,
        },
        Payload::Huge => {
            let data = serde_json::json!({"name": "x".repeat(MAX_BODY_BYTES), "location": "L",
                "age": 3, "infectedtype": "x", "state": "y"});
            of(case_event(&Reported::new_id(), data), None)
        }
    }
}

async fn post_event(url: &str, p: &Prepared) -> u16 {
    let http = stack::testing::http_client();
    let req = match &p.event {
        Some(e) => events::http::binary_request(&http, url, e.clone(), &[]).unwrap(),
        None => http
            .post(url)
            .header("ce-specversion", "1.0")
            .header("ce-id", Reported::new_id())
            .header("ce-source", "/x")
            .header("ce-type", events::types::CASE_REPORTED)
            .header("content-type", "application/json")
            .body(p.bytes.clone()),
    };
    req.send().await.unwrap().status().as_u16()
}

async fn forged_delivery(url: &str, source: &str, p: &Prepared) -> u16 {
    let body = common::stream_source::go_json_marshal(&[&b"ce"[..], &p.bytes]);
    stack::testing::http_client()
        .post(url)
        .header("ce-specversion", "1.0")
        // An entry id far in the past: never one the Stream holds.
        .header("ce-id", "1-0")
        .header("ce-source", source)
        .header("ce-type", "dev.knative.sources.redisstream")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn xlen(redis: &mut redis::aio::ConnectionManager, key: String) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(redis)
        .await
        .unwrap()
}

async fn run(inputs: Vec<(Payload, Route)>, push_mode: bool) -> Result<(), TestCaseError> {
    let mut e = env().await;
    let body_limit = MAX_BODY_BYTES.to_string();
    let mut config = vec![("MAX_BODY_BYTES", body_limit.as_str())];
    if push_mode {
        // A reconciling pass with no delay races every delivery.
        config.extend([
            ("STREAM_CONSUMER", "false"),
            ("RECONCILE_AFTER_MS", "0"),
            ("RECONCILE_INTERVAL_MS", "5"),
        ]);
    }
    let sub = spawn(&e.env, &config).await;
    let url = format!("{}/", sub.url);
    let redis_url = e.env["REDIS_URL"].clone();
    let source_attr = format!("{}/{}", redis_url.trim_end_matches('/'), e.keys.stream());
    // The adapter reads the same entries as redis-sub's own consumer (pull
    // mode) or its reconciling pass (push mode), racing it.
    let mut source = StreamSource::start(e.redis.clone(), &redis_url, &e.keys.stream(), &url).await;
    let mut earlier: Vec<(String, Event)> = Vec::new();
    let mut valid = BTreeSet::new();
    let mut unreadable_entries = 0u64;
    for (payload, route) in &inputs {
        let p = prepare(payload, &earlier);
        if let (Some(id), Some(event), Payload::Valid { .. }) = (&p.valid_id, &p.event, payload) {
            earlier.push((id.clone(), event.clone()));
        }
        match route {
            Route::Stream => {
                let _: String = redis::cmd("XADD")
                    .arg(e.keys.stream())
                    .arg("*")
                    .arg(events::redis::STREAM_FIELD)
                    .arg(&p.bytes)
                    .query_async(&mut e.redis)
                    .await
                    .unwrap();
                match &p.valid_id {
                    Some(id) => drop(valid.insert(id.clone())),
                    None => unreadable_entries += 1,
                }
            }
            Route::Post => {
                let status = post_event(&url, &p).await;
                match (&p.valid_id, payload) {
                    (Some(id), _) => {
                        prop_assert_eq!(status, 202, "{:?}", payload);
                        valid.insert(id.clone());
                    }
                    (None, Payload::Huge) => prop_assert_eq!(status, 413),
                    (None, _) => prop_assert_eq!(status, 400, "{:?}", payload),
                }
            }
            Route::ForgedDelivery => {
                let status = forged_delivery(&url, &source_attr, &p).await;
                prop_assert!([200, 400, 413].contains(&status), "{status} {payload:?}");
            }
        }
    }
    // 413: an entry past redis-sub's body limit; its own reader settles it.
    for d in source.drain().await {
        prop_assert!(
            matches!(d, Delivery::Answered(200 | 202 | 400 | 413)),
            "delivery answered {d:?}"
        );
    }
    let start = Instant::now();
    loop {
        let stored: BTreeSet<String> = stored(&e.cases).await.into_keys().collect();
        let dead = xlen(&mut e.redis, e.keys.dead_letters()).await;
        let left = xlen(&mut e.redis, e.keys.stream()).await;
        if stored == valid && dead == unreadable_entries && left == 0 {
            break;
        }
        prop_assert!(
            start.elapsed() < Duration::from_secs(20),
            "stored {} of {} valid ({} others), {dead} dead letters for {unreadable_entries} unreadable entries, {left} entries left",
            stored.intersection(&valid).count(),
            valid.len(),
            stored.difference(&valid).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing pending in either group (redis-sub's exists in pull mode only).
    let mut groups = vec![common::stream_source::GROUP.to_owned()];
    if !push_mode {
        groups.push(e.keys.consumer_group());
    }
    for group in groups {
        let (pending, ..): (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(e.keys.stream())
            .arg(&group)
            .query_async(&mut e.redis)
            .await
            .unwrap();
        prop_assert_eq!(pending, 0, "pending in {}", group);
    }
    // Still alive and serving.
    let health = stack::testing::http_client()
        .get(format!("{}/healthz", sub.url))
        .send()
        .await
        .unwrap();
    prop_assert_eq!(health.status().as_u16(), 200);
    source.shut_down().await;
    sub.stop().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_input_stores_every_valid_case_once_and_dead_letters_each_unreadable_entry_once(
        inputs in prop::collection::vec((payload(), route()), 1..40),
        push_mode in any::<bool>(),
    ) {
        RT.block_on(run(inputs, push_mode))?;
    }
}

#[test]
fn the_adapters_json_encoding_is_gos() {
    // What Go's encoding/json writes for these strings.
    let got = common::stream_source::go_json_marshal(&[
        &b"ce"[..],
        "<a & b>\u{2028}\"\\\n\u{1}".as_bytes(),
        &b"a\xe2\x82b\xff"[..],
    ]);
    assert_eq!(
        got,
        r#"["ce","\u003ca \u0026 b\u003e\u2028\"\\\n\u0001","a\ufffd\ufffdb\ufffd"]"#
    );
}
