//! The whole pipeline end to end: every function as its own process (the
//! binaries `cargo build --bins` made), real Redis, the real
//! MongoDB-compatible server, each test with its own database and key prefix.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Pipeline;
use events::proto::writer::case_writer_client::CaseWriterClient;
use events::proto::writer::{WriteRequest, WriteStatus};
use events::{Case, Reported, WritePath};
use serde_json::{Value, json};
use stack::MongoServer;

async fn start(mongodb_uri: &str, extra_env: &[(&str, &str)]) -> Pipeline {
    common::start(common::Start {
        bin_dir: stack::testing::built_binaries().unwrap(),
        redis_url: &stack::testing::servers().redis_url,
        mongodb_uri,
        name: "e2e",
        extra_env,
        echo_logs: true,
    })
    .await
}

const AREAS: [&str; 5] = ["Guatemala", "Petén", "Izabal", "Zacapa", "Sololá"];
const STATES: [&str; 3] = ["active", "recovered", "deceased"];

fn case(i: usize) -> Value {
    json!({"name": format!("Case {i}"), "location": AREAS[i % 5], "age": (i * 7) % 100, "infectedtype": "communitary", "state": STATES[i % 3]})
}

impl Pipeline {
    async fn post(&self, function: &str, body: &Value) -> reqwest::Response {
        stack::testing::http_client()
            .post(format!("{}/cases", self.sup.url(function)))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts cases `from..to` in batches of `batch`; returns the accepted ids.
    async fn post_cases(
        &self,
        function: &str,
        from: usize,
        to: usize,
        batch: usize,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for start in (from..to).step_by(batch) {
            let end = (start + batch).min(to);
            let body = if end - start == 1 {
                case(start)
            } else {
                Value::Array((start..end).map(case).collect())
            };
            let resp = self.post(function, &body).await;
            assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
            let v: Value = resp.json().await.unwrap();
            ids.extend(
                v["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned()),
            );
        }
        ids
    }

    async fn summary(&self) -> Value {
        stack::testing::http_client()
            .get(format!("{}/api/summary", self.sup.url("dashboard-api")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the materialised total reaches `n`.
    async fn wait_total(&self, n: u64, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let s = self.summary().await;
            if s["total"].as_u64() == Some(n) {
                return s;
            }
            assert!(
                start.elapsed() < within,
                "total is {} after {within:?}, expected {n}",
                s["total"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every statistic equals what the stored documents say.
    async fn assert_counters_agree(&self) {
        let stored = self.cases.count(None).await.unwrap();
        let totals = self.agg.totals().await.unwrap();
        assert_eq!(totals.total, stored, "MongoDB total vs stored documents");
        for p in WritePath::ALL {
            let n = self.cases.count(Some(p)).await.unwrap();
            assert_eq!(
                totals.by_path.get(p.as_str()).copied().unwrap_or(0),
                n,
                "MongoDB total on path {p}"
            );
        }
        let areas: u64 = self
            .agg
            .top_areas(100)
            .await
            .unwrap()
            .iter()
            .map(|a| a.cases)
            .sum();
        assert_eq!(areas, stored, "area counts");
        let states: u64 = self
            .agg
            .states()
            .await
            .unwrap()
            .iter()
            .map(|s| s.cases)
            .sum();
        assert_eq!(states, stored, "state counts");
        let redis = self.agg.redis().totals().await.unwrap();
        assert_eq!(
            redis.get("cases").copied().unwrap_or(0) as u64,
            stored,
            "Redis total"
        );
        let ages: u64 = self
            .agg
            .redis()
            .ages()
            .await
            .unwrap()
            .iter()
            .map(|b| b.cases)
            .sum();
        assert_eq!(ages, stored, "Redis age buckets");
    }

    /// All stored ids, to check for loss and duplicates.
    async fn stored_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .cases
                .page(100, after.as_deref(), None, None)
                .await
                .unwrap();
            ids.extend(page.cases.iter().map(|c| c.id.clone()));
            match page.next {
                Some(n) => after = Some(n),
                None => return ids,
            }
        }
    }
}

#[tokio::test]
async fn cases_from_both_ingest_ports_land_once_with_the_right_path() {
    let p = start(&stack::testing::servers().mongodb_uri, &[]).await;
    let mut grpc = p.post_cases("ingest-grpc", 0, 200, 100).await;
    grpc.extend(p.post_cases("ingest-grpc", 200, 220, 1).await);
    let mut redis = p.post_cases("ingest-redis", 1000, 1200, 100).await;
    redis.extend(p.post_cases("ingest-redis", 1200, 1220, 1).await);
    let s = p.wait_total(440, Duration::from_secs(30)).await;
    assert_eq!(s["by_path"]["grpc"], 220);
    assert_eq!(s["by_path"]["redis"], 220);
    assert_eq!(s["by_revision"]["ingest-grpc-00001"], 220);
    assert_eq!(s["by_revision"]["ingest-redis-00001"], 220);

    let stored: Vec<String> = p.stored_ids().await;
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), 440, "no duplicates");
    let accepted: HashSet<&String> = grpc.iter().chain(redis.iter()).collect();
    assert_eq!(unique, accepted, "exactly the accepted cases are stored");
    for id in grpc.iter().take(5) {
        let page = p.cases.page(1, Some(&bump(id)), None, None).await.unwrap();
        assert_eq!(page.cases[0].path, WritePath::Grpc);
    }
    p.assert_counters_agree().await;
    // The Stream is emptied once entries are stored (XACK + XDEL).
    let len: u64 = redis::cmd("XLEN")
        .arg(p.keys.stream())
        .query_async(&mut p.redis.clone())
        .await
        .unwrap();
    assert_eq!(len, 0);
    p.sup.stop().await;
}

/// The smallest id greater than `id`, so `after=bump(id)` pages start at `id`.
fn bump(id: &str) -> String {
    format!("{id}0")
}

#[tokio::test]
async fn redelivery_through_either_path_adds_nothing() {
    let p = start(&stack::testing::servers().mongodb_uri, &[]).await;
    let reported: Vec<Reported> = (0..3)
        .map(|i| Reported {
            id: Reported::new_id(),
            case: Case::new(&format!("R{i}"), "Jutiapa", 40, "imported", "active").unwrap(),
            time: chrono::Utc::now(),
            revision: Some("ingest-grpc-00001".into()),
            traceparent: None,
        })
        .collect();
    // gRPC: the same events twice; the second time every one is a duplicate.
    let mut client = CaseWriterClient::connect(p.sup.url("grpc-writer"))
        .await
        .unwrap();
    let req = || WriteRequest {
        events: reported
            .iter()
            .map(|r| events::proto::to_proto(&r.to_event("/test")))
            .collect(),
    };
    let first = client.write(req()).await.unwrap().into_inner().results;
    assert!(
        first.iter().all(|r| r.status == WriteStatus::Stored as i32),
        "{first:?}"
    );
    let second = client.write(req()).await.unwrap().into_inner().results;
    assert!(
        second
            .iter()
            .all(|r| r.status == WriteStatus::Duplicate as i32),
        "{second:?}"
    );
    // A rejected event is reported, not stored.
    let mut bad = events::proto::to_proto(&reported[0].to_event("/test"));
    bad.id = "bad-1".into();
    bad.data = Some(events::proto::ce::cloud_event::Data::TextData(
        "{\"name\":{\"$gt\":\"\"}}".into(),
    ));
    let r = client
        .write(WriteRequest { events: vec![bad] })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(r[0].status, WriteStatus::Rejected as i32);

    // Redis: the same three entries appended twice, plus one undecodable entry.
    for _ in 0..2 {
        for r in &reported {
            let _: String = redis::cmd("XADD")
                .arg(p.keys.stream())
                .arg("*")
                .arg(events::redis::STREAM_FIELD)
                .arg(events::redis::encode(&r.to_event("/test")))
                .query_async(&mut p.redis.clone())
                .await
                .unwrap();
        }
    }
    let _: String = redis::cmd("XADD")
        .arg(p.keys.stream())
        .arg("*")
        .arg("ce")
        .arg("not json")
        .query_async(&mut p.redis.clone())
        .await
        .unwrap();

    // The aggregate gets a case.stored event again, for a batch already
    // counted (its record is gone): twice, and nothing changes.
    let event = events::StoredBatch {
        batch: "b-already-counted".to_owned(),
        cases: 3,
        record: None,
    }
    .to_event("/test", None);
    for _ in 0..2 {
        let resp = events::http::binary_request(
            &stack::testing::http_client(),
            &format!("{}/", p.sup.url("aggregate")),
            event.clone(),
            &[],
        )
        .unwrap()
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let s = p.wait_total(3, Duration::from_secs(20)).await;
    assert_eq!(s["by_path"]["grpc"], 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.cases.count(None).await.unwrap(), 3);
    assert_eq!(p.summary().await["total"], 3);
    p.assert_counters_agree().await;
    let dead: u64 = redis::cmd("XLEN")
        .arg(p.keys.dead_letters())
        .query_async(&mut p.redis.clone())
        .await
        .unwrap();
    assert_eq!(
        dead, 1,
        "the undecodable entry is kept in the dead-letter stream"
    );
    p.sup.stop().await;
}

#[tokio::test]
async fn a_mongodb_outage_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut mongo = MongoServer::start(dir.path()).unwrap();
    let p = start(
        &mongo.uri(),
        &[
            ("WRITE_DEADLINE_MS", "1000"),
            ("FORWARD_TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    let mut accepted = p.post_cases("ingest-grpc", 0, 50, 25).await;
    accepted.extend(p.post_cases("ingest-redis", 50, 100, 25).await);
    p.wait_total(100, Duration::from_secs(20)).await;

    mongo.stop();
    // gRPC path: the writer cannot store, so ingest answers 503 and keeps nothing.
    let resp = p.post("ingest-grpc", &case(500)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    // Redis path: the Stream holds the cases until MongoDB is back.
    accepted.extend(p.post_cases("ingest-redis", 100, 160, 20).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    mongo.restart().unwrap();

    // The 503'd gRPC case may or may not have been stored (it was not accepted);
    // everything accepted must be, exactly once.
    let start = Instant::now();
    loop {
        let stored = p.stored_ids().await;
        let set: HashSet<&String> = stored.iter().collect();
        assert_eq!(set.len(), stored.len(), "no duplicates");
        if accepted.iter().all(|id| set.contains(id)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "accepted cases missing after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = p.cases.count(None).await.unwrap();
    p.wait_total(stored, Duration::from_secs(20)).await;
    p.assert_counters_agree().await;
    p.sup.stop().await;
}
