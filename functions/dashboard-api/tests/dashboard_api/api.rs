//! dashboard-api against real Redis and the MongoDB-compatible server: every
//! endpoint's numbers for a known set of stored cases, bad parameters, and
//! live pushes over SSE.

use crate::helpers;

use std::time::Duration;

use events::{Case, Reported, WritePath};
use helpers::{Env, env};
use serde_json::Value;

/// (name, location, age, state, path, revision)
const KNOWN: &[(&str, &str, i64, &str, WritePath, &str)] = &[
    (
        "Ana",
        "Guatemala",
        4,
        "active",
        WritePath::Grpc,
        "ingest-grpc-00001",
    ),
    (
        "Beto",
        "Guatemala",
        14,
        "active",
        WritePath::Grpc,
        "ingest-grpc-00001",
    ),
    (
        "Carla",
        "Guatemala",
        24,
        "recovered",
        WritePath::Grpc,
        "ingest-grpc-00002",
    ),
    (
        "Dani",
        "Guatemala",
        34,
        "active",
        WritePath::Redis,
        "ingest-redis-00001",
    ),
    (
        "Eva",
        "Petén",
        44,
        "deceased",
        WritePath::Redis,
        "ingest-redis-00001",
    ),
    (
        "Fito",
        "Petén",
        54,
        "active",
        WritePath::Redis,
        "ingest-redis-00001",
    ),
    (
        "Gaby",
        "Petén",
        95,
        "recovered",
        WritePath::Grpc,
        "ingest-grpc-00001",
    ),
    (
        "Hugo",
        "Izabal",
        95,
        "active",
        WritePath::Grpc,
        "ingest-grpc-00001",
    ),
    (
        "Inés",
        "Izabal",
        130,
        "active",
        WritePath::Redis,
        "ingest-redis-00001",
    ),
    (
        "Juan",
        "Zacapa",
        0,
        "recovered",
        WritePath::Grpc,
        "ingest-grpc-00001",
    ),
];

impl Env {
    async fn seed(&self, rows: &[(&str, &str, i64, &str, WritePath, &str)]) -> Vec<String> {
        let (mut ids, mut batches) = (Vec::new(), Vec::new());
        for (name, loc, age, state, path, rev) in rows {
            let r = Reported {
                id: Reported::new_id(),
                case: Case::new(name, loc, *age, "communitary", state).unwrap(),
                time: chrono::Utc::now(),
                revision: Some(rev.to_string()),
                traceparent: None,
            };
            let stored = self
                .cases
                .insert(std::slice::from_ref(&r), *path)
                .await
                .unwrap();
            batches.extend(stored.batch);
            ids.push(r.id.clone());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.agg.count_batches(&batches).await.unwrap();
        ids
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, v) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    }
}

#[tokio::test]
async fn every_endpoint_reports_the_stored_cases() {
    let e = env(&[]).await;
    let empty = e.ok("/api/summary").await;
    assert_eq!(empty["total"], 0);
    assert!(empty["updated_ms"].is_null());
    e.seed(KNOWN).await;

    let s = e.ok("/api/summary").await;
    assert_eq!(s["total"], 10);
    assert_eq!(
        s["by_path"],
        serde_json::json!({"grpc": 6, "redis": 4, "http": 0})
    );
    assert_eq!(
        s["by_revision"],
        serde_json::json!({"ingest-grpc-00001": 5, "ingest-grpc-00002": 1, "ingest-redis-00001": 4})
    );
    assert_eq!(s["series"].as_array().unwrap().len(), 60);
    assert_eq!(s["rate"]["window_s"], 60);
    assert!(s["updated_ms"].as_i64().unwrap() > 0);

    let top = e.ok("/api/areas/top?n=3").await;
    let top: Vec<(String, u64)> = top["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["location"].as_str().unwrap().to_owned(),
                a["cases"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        top,
        [
            ("Guatemala".to_owned(), 4),
            ("Petén".to_owned(), 3),
            ("Izabal".to_owned(), 2)
        ]
    );
    assert_eq!(
        e.ok("/api/areas/top").await["areas"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "n defaults to 3"
    );
    assert_eq!(
        e.ok("/api/areas/top?n=50").await["areas"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let states = e.ok("/api/states").await;
    let states: Vec<(String, u64)> = states["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap().to_owned(),
                a["cases"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("active".to_owned(), 6),
            ("recovered".to_owned(), 3),
            ("deceased".to_owned(), 1)
        ]
    );

    let recent = e.ok("/api/cases/recent").await;
    let names: Vec<&str> = recent["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Juan", "Inés", "Hugo", "Gaby", "Fito"]);

    let ages = e.ok("/api/ages").await;
    let ages: Vec<(String, u64)> = ages["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["range"].as_str().unwrap().to_owned(),
                b["cases"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = [
        ("0-9", 2),
        ("10-19", 1),
        ("20-29", 1),
        ("30-39", 1),
        ("40-49", 1),
        ("50-59", 1),
        ("60-69", 0),
        ("70-79", 0),
        ("80-89", 0),
        ("90+", 3),
    ];
    assert_eq!(ages, expect.map(|(r, n)| (r.to_owned(), n)));

    // The stored collection, paged by cursor, newest first, with filters.
    let p1 = e.ok("/api/cases?limit=4").await;
    let names = |v: &Value| {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&p1), ["Juan", "Inés", "Hugo", "Gaby"]);
    let p2 = e
        .ok(&format!(
            "/api/cases?limit=4&after={}",
            p1["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(names(&p2), ["Fito", "Eva", "Dani", "Carla"]);
    let p3 = e
        .ok(&format!(
            "/api/cases?limit=4&after={}",
            p2["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(names(&p3), ["Beto", "Ana"]);
    assert!(p3["next"].is_null());
    assert_eq!(
        names(&e.ok("/api/cases?location=Pet%C3%A9n").await),
        ["Gaby", "Fito", "Eva"]
    );
    assert_eq!(
        names(&e.ok("/api/cases?location=Guatemala&state=active").await),
        ["Dani", "Beto", "Ana"]
    );
    let c = &p1["cases"][0];
    assert_eq!(
        (
            c["location"].as_str(),
            c["age"].as_u64(),
            c["path"].as_str()
        ),
        (Some("Zacapa"), Some(0), Some("grpc"))
    );

    let snap = e.ok("/api/snapshot").await;
    assert_eq!(snap["summary"]["total"], 10);
    assert_eq!(snap["top_areas"][0]["location"], "Guatemala");
    assert_eq!(snap["recent"].as_array().unwrap().len(), 5);
    assert_eq!(snap["ages"].as_array().unwrap().len(), 10);

    let log = e.ok("/api/ingest-log?limit=5").await;
    assert_eq!(
        log["entries"].as_array().unwrap().len(),
        0,
        "nothing went through ingest here"
    );
    let metrics = e
        .http
        .get(format!("{}/metrics", e.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dashboard_sse_clients"));
}

#[tokio::test]
async fn bad_parameters_get_400_naming_the_parameter() {
    let e = env(&[]).await;
    for (path, field) in [
        ("/api/areas/top?n=0", "n"),
        ("/api/areas/top?n=101", "n"),
        ("/api/areas/top?n=three", "n"),
        ("/api/areas/top?n=-1", "n"),
        ("/api/areas/top?top=3", "top"),
        ("/api/cases?limit=0", "limit"),
        ("/api/cases?limit=1000", "limit"),
        ("/api/cases?after=%7B%22%24gt%22%3A%22%22%7D", "after"),
        ("/api/cases?after=../../etc", "after"),
        ("/api/cases?location=", "location"),
        ("/api/cases?state=%20%20", "state"),
        (
            &format!("/api/cases?location={}", "x".repeat(300)),
            "location",
        ),
        ("/api/cases?limit=5&limit=6", "limit"),
        ("/api/ingest-log?limit=99999", "limit"),
        ("/api/summary?verbose=1", "verbose"),
        ("/api/states?x", "x"),
    ] {
        let (status, v) = e.get(path).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["field"], field, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{path}: {v}");
    }
    let (status, v) = e.get("/api/nope").await;
    assert_eq!(status, 404);
    assert!(v["error"].is_string());
    // Operator-looking filter values are plain text and match nothing.
    let v = e.ok("/api/cases?location=%7B%22%24ne%22%3A%22%22%7D").await;
    assert_eq!(v["cases"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_stream_sends_a_snapshot_at_once_and_again_after_an_update() {
    let e = env(&[]).await;
    e.seed(&KNOWN[..2]).await;
    let resp = e
        .http
        .get(format!("{}/api/stream", e.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut resp = resp;
    let mut buf = String::new();
    let mut next_snapshot = async || -> Value {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if event.lines().any(|l| l == "event: snapshot") {
                    let data: String = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .collect();
                    return serde_json::from_str(&data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    assert_eq!(next_snapshot().await["summary"]["total"], 2);
    // What aggregate does after an update: the counters change, then a notice.
    e.seed(&KNOWN[2..5]).await;
    let notice = events::StatsUpdated { total: 5, at_ms: 0 }.to_event("/aggregate");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(e.keys.stats_channel())
        .arg(events::redis::encode(&notice))
        .query_async(&mut e.redis.clone())
        .await
        .unwrap();
    let mut total = 0;
    for _ in 0..5 {
        total = next_snapshot().await["summary"]["total"].as_u64().unwrap();
        if total == 5 {
            break;
        }
    }
    assert_eq!(total, 5);
}
