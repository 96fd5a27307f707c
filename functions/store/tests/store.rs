//! The data layer against a real MongoDB-compatible server and a real Redis.

use std::time::Duration;

use chrono::Utc;
use events::{Case, Reported, WritePath};
use store::batch::Carried;
use store::stats::ToCount;
use store::testing::Stores;
use store::{Aggregator, CaseStore, IngestLog, LogRecord, Mongo};

struct Env {
    mongo: Mongo,
    cases: CaseStore,
    agg: Aggregator,
}

async fn env() -> Env {
    let stores = Stores::new("store").await;
    Env {
        cases: stores.cases(),
        agg: stores.aggregator(),
        mongo: stores.mongo,
    }
}

fn reported(name: &str, location: &str, age: i64, state: &str, revision: &str) -> Reported {
    Reported {
        id: Reported::new_id(),
        case: Case::new(name, location, age, "communitary", state).unwrap(),
        time: Utc::now(),
        revision: Some(revision.to_owned()),
        traceparent: None,
    }
}

#[tokio::test]
async fn inserts_are_idempotent_on_the_event_id() {
    let e = env().await;
    let a = reported("Ana", "Petén", 30, "active", "r1");
    let b = reported("Luis", "Izabal", 40, "active", "r1");
    let first = e
        .cases
        .insert(&[a.clone(), b.clone()], WritePath::Grpc)
        .await
        .unwrap();
    assert_eq!(first.stored.len(), 2);
    assert!(first.duplicates.is_empty());
    let c = reported("Eva", "Zacapa", 50, "recovered", "r1");
    let again = e
        .cases
        .insert(
            &[a.clone(), c.clone(), b.clone(), c.clone()],
            WritePath::Redis,
        )
        .await
        .unwrap();
    assert_eq!(
        again
            .stored
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        [c.id.as_str()]
    );
    assert_eq!(again.duplicates, [a.id.clone(), b.id.clone(), c.id.clone()]);
    assert_eq!(e.cases.count(None).await.unwrap(), 3);
    assert_eq!(e.cases.count(Some(WritePath::Grpc)).await.unwrap(), 2);
}

#[tokio::test]
async fn counting_is_exactly_once_and_materialises_every_statistic() {
    let e = env().await;
    let batch: Vec<Reported> = vec![
        reported("A", "Guatemala", 5, "active", "ingest-grpc-00001"),
        reported("B", "Guatemala", 15, "active", "ingest-grpc-00001"),
        reported("C", "Guatemala", 95, "recovered", "ingest-grpc-00002"),
        reported("D", "Petén", 35, "deceased", "ingest-grpc-00001"),
        reported("E", "Petén", 35, "active", "ingest-grpc-00001"),
        reported("F", "Izabal", 130, "active", "ingest-grpc-00001"),
    ];
    let first = e.cases.insert(&batch[..4], WritePath::Grpc).await.unwrap();
    let second = e.cases.insert(&batch[4..], WritePath::Redis).await.unwrap();
    // A retried write stores nothing and makes no second record.
    let again = e.cases.insert(&batch[..4], WritePath::Grpc).await.unwrap();
    assert_eq!((again.stored.len(), again.duplicates.len()), (0, 4));
    assert!(again.batch.is_none());
    let ids = vec![first.batch.unwrap(), second.batch.unwrap()];

    // Two aggregators counting the same batches at once, then a redelivery: each case counts once.
    let (x, y) = tokio::join!(e.agg.count_batches(&ids), e.agg.count_batches(&ids));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.deltas.cases + y.deltas.cases, 6);
    assert_eq!(x.batches + y.batches, 2);
    assert_eq!(e.agg.count_batches(&ids).await.unwrap().batches, 0);
    assert_eq!(
        e.agg
            .count_batches(&["not-a-batch-id".to_owned()])
            .await
            .unwrap()
            .batches,
        0
    );

    let totals = e.agg.totals().await.unwrap();
    assert_eq!(totals.total, 6);
    assert_eq!(totals.by_path["grpc"], 4);
    assert_eq!(totals.by_path["redis"], 2);
    assert_eq!(totals.by_revision["ingest-grpc-00001"], 5);
    let top = e.agg.top_areas(3).await.unwrap();
    let top: Vec<(&str, u64)> = top.iter().map(|a| (a.location.as_str(), a.cases)).collect();
    assert_eq!(top, [("Guatemala", 3), ("Petén", 2), ("Izabal", 1)]);
    let states = e.agg.states().await.unwrap();
    let states: Vec<(&str, u64)> = states.iter().map(|s| (s.state.as_str(), s.cases)).collect();
    assert_eq!(states, [("active", 4), ("deceased", 1), ("recovered", 1)]);

    let r = e.agg.redis();
    let ages: Vec<u64> = r.ages().await.unwrap().iter().map(|b| b.cases).collect();
    assert_eq!(ages, [1, 1, 0, 2, 0, 0, 0, 0, 0, 2]);
    let recent = r.recent(5).await.unwrap();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0].case.name.as_str(), "F", "newest first");
    let t = r.totals().await.unwrap();
    assert_eq!(t["cases"], 6);
    assert_eq!(t["path:grpc"], 4);
    let series = r.series(Utc::now().timestamp() + 1, 60).await.unwrap();
    assert_eq!(series.len(), 60);
    let per_path: u64 = series.iter().flat_map(|s| s.by_path.values()).sum();
    assert_eq!(per_path, 6);
    assert_eq!(
        e.cases.count(None).await.unwrap(),
        totals.total,
        "counters equal the stored documents"
    );
}

/// What a `case.stored` event would carry for this write.
fn carried(outcome: &store::InsertOutcome) -> ToCount {
    let bson = outcome
        .carried
        .as_deref()
        .expect("a small record is carried");
    ToCount {
        id: outcome.batch.clone().expect("new cases make a batch"),
        carried: Some(Carried::decode(&Carried::encode(bson)).unwrap()),
    }
}

#[tokio::test]
async fn carried_deltas_count_only_when_they_are_the_records_own() {
    let e = env().await;
    let one = e
        .cases
        .insert(
            &[reported("A", "Petén", 30, "active", "r1")],
            WritePath::Grpc,
        )
        .await
        .unwrap();
    let two = e
        .cases
        .insert(
            &[
                reported("B", "Izabal", 40, "active", "r1"),
                reported("C", "Izabal", 50, "deceased", "r1"),
            ],
            WritePath::Redis,
        )
        .await
        .unwrap();
    // A neighbour's event: the first record's id with the second's deltas
    // (3 cases where the record holds 1). They are not its own, so the flush
    // reads the records instead and counts what they hold.
    let forged = ToCount {
        id: one.batch.clone().unwrap(),
        carried: carried(&two).carried,
    };
    let counted = e.agg.count(vec![forged]).await.unwrap();
    assert_eq!((counted.batches, counted.deltas.cases), (1, 1));
    // The second record's own deltas are applied without reading it; a
    // redelivery of either event then changes nothing.
    let counted = e.agg.count(vec![carried(&two)]).await.unwrap();
    assert_eq!((counted.batches, counted.deltas.cases), (1, 2));
    let again = e
        .agg
        .count(vec![carried(&one), carried(&two)])
        .await
        .unwrap();
    assert_eq!((again.batches, again.deltas.cases), (0, 0));

    let totals = e.agg.totals().await.unwrap();
    assert_eq!(totals.total, 3);
    assert_eq!((totals.by_path["grpc"], totals.by_path["redis"]), (1, 2));
    let areas = e.agg.top_areas(5).await.unwrap();
    let areas: Vec<(&str, u64)> = areas
        .iter()
        .map(|a| (a.location.as_str(), a.cases))
        .collect();
    assert_eq!(areas, [("Izabal", 2), ("Petén", 1)]);
    assert_eq!(e.cases.count(None).await.unwrap(), totals.total);
}

#[tokio::test]
async fn sweep_counts_cases_whose_event_never_came() {
    let e = env().await;
    let batch: Vec<Reported> = (0..5)
        .map(|i| reported(&format!("S{i}"), "Jalapa", 20 + i, "active", "r"))
        .collect();
    e.cases.insert(&batch, WritePath::Redis).await.unwrap();
    assert_eq!(
        e.agg.sweep(Duration::from_secs(3600), 1000).await.unwrap(),
        0,
        "too recent to sweep yet"
    );
    assert_eq!(e.agg.sweep(Duration::ZERO, 1000).await.unwrap(), 5);
    assert_eq!(e.agg.sweep(Duration::ZERO, 1000).await.unwrap(), 0);
    assert_eq!(e.agg.totals().await.unwrap().total, 5);
    assert_eq!(e.agg.redis().totals().await.unwrap()["cases"], 5);
}

#[tokio::test]
async fn a_replayed_redis_update_changes_nothing() {
    let e = env().await;
    let batch: Vec<Reported> = (0..3)
        .map(|i| reported(&format!("R{i}"), "Jutiapa", 60, "active", "r"))
        .collect();
    let out = e.cases.insert(&batch, WritePath::Grpc).await.unwrap();
    let deltas = store::batch::Deltas::of(&out.stored);
    let r = e.agg.redis();
    assert!(r.apply("flush-1", &deltas, 1).await.unwrap());
    assert!(!r.apply("flush-1", &deltas, 2).await.unwrap());
    assert_eq!(r.totals().await.unwrap()["cases"], 3);
    assert_eq!(r.recent(20).await.unwrap().len(), 3);
}

#[tokio::test]
async fn pages_follow_the_cursor_newest_first_with_filters() {
    let e = env().await;
    let mut all = Vec::new();
    for i in 0..25 {
        let loc = if i % 5 == 0 { "Sololá" } else { "Escuintla" };
        all.push(reported(
            &format!("P{i:02}"),
            loc,
            30,
            if i % 2 == 0 { "active" } else { "recovered" },
            "r",
        ));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    e.cases.insert(&all, WritePath::Grpc).await.unwrap();
    let p1 = e.cases.page(10, None, None, None).await.unwrap();
    assert_eq!(p1.cases.first().unwrap().case.name.as_str(), "P24");
    let p2 = e
        .cases
        .page(10, p1.next.as_deref(), None, None)
        .await
        .unwrap();
    let p3 = e
        .cases
        .page(10, p2.next.as_deref(), None, None)
        .await
        .unwrap();
    assert_eq!(
        (p1.cases.len(), p2.cases.len(), p3.cases.len()),
        (10, 10, 5)
    );
    assert!(p3.next.is_none());
    assert_eq!(p3.cases.last().unwrap().case.name.as_str(), "P00");
    let sol = e.cases.page(50, None, Some("Sololá"), None).await.unwrap();
    assert_eq!(sol.cases.len(), 5);
    let sol_active = e
        .cases
        .page(50, None, Some("Sololá"), Some("active"))
        .await
        .unwrap();
    assert_eq!(
        sol_active
            .cases
            .iter()
            .map(|c| c.case.name.as_str())
            .collect::<Vec<_>>(),
        ["P20", "P10", "P00"]
    );
    // Operator-looking values are plain strings: they match nothing.
    assert!(
        e.cases
            .page(50, None, Some("{\"$gt\": \"\"}"), None)
            .await
            .unwrap()
            .cases
            .is_empty()
    );
}

#[tokio::test]
async fn ingest_log_round_trips_newest_first() {
    let e = env().await;
    let log = IngestLog::new(e.mongo.clone());
    let entry = |t: i64, result: &str| LogRecord {
        time_ms: t,
        path: "grpc".into(),
        result: result.into(),
        reason: String::new(),
        requests: 2,
        cases: 3,
        bytes: 300,
        revision: "ingest-grpc-00001".into(),
    };
    let now = Utc::now().timestamp_millis();
    log.write(&[
        entry(now - 2000, "accepted"),
        entry(now, "refused"),
        entry(now - 1000, "unavailable"),
    ])
    .await
    .unwrap();
    let latest = log.latest(2).await.unwrap();
    assert_eq!(
        latest.iter().map(|l| l.result.as_str()).collect::<Vec<_>>(),
        ["refused", "unavailable"]
    );
    assert_eq!(latest[0], entry(now, "refused"));
}
