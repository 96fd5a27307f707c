//! A stored case that cannot be counted never holds back the cases counted
//! with it: it is moved to the dead letters with its reason, and the
//! counters keep agreeing with the stored documents.

use std::collections::HashSet;

use chrono::Utc;
use events::redis::Keys;
use events::{Case, Reported, WritePath};
use store::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};

fn reported(name: &str, revision: &str) -> Reported {
    Reported {
        id: Reported::new_id(),
        case: Case::new(name, "Escuintla", 30, "communitary", "active").unwrap(),
        time: Utc::now(),
        revision: Some(revision.to_owned()),
        traceparent: None,
    }
}

#[tokio::test]
async fn cases_with_revisions_that_cannot_be_counted_are_dead_lettered_and_the_rest_counted() {
    let s = stack::testing::servers();
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: stack::testing::unique("dead_letters"),
    })
    .await
    .unwrap();
    let keys = Keys::new(format!("{}:", stack::testing::unique("dead_letters")));
    let redis = RedisStats::new(runtime::redis::connect_lazy(&s.redis_url).unwrap(), keys);
    let cases = CaseStore::new(mongo.clone());
    let agg = Aggregator::new(mongo, redis);

    // Stored by a writer that did not check revisions (an older version).
    let good = [
        reported("Ana", "ingest-00001"),
        reported("Luis", "ingest-00001"),
    ];
    let poison = [
        reported("Eva", ""),
        reported("Juan", "bad\u{0}rev"),
        reported("Rosa", "a.b$c"),
    ];
    let all: Vec<Reported> = good.iter().chain(&poison).cloned().collect();
    cases.insert(&all, WritePath::Grpc).await.unwrap();

    let ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    let counted = agg
        .count(&ids)
        .await
        .expect("one flush counts the good cases");
    let counted: HashSet<String> = counted.into_iter().map(|c| c.id).collect();
    let expected: HashSet<String> = good.iter().map(|r| r.id.clone()).collect();
    assert_eq!(counted, expected);
    assert_eq!(agg.totals().await.unwrap().total, 2);
    assert_eq!(
        cases.count(None).await.unwrap(),
        2,
        "counters equal documents"
    );

    let dead = agg.dead_letters(10).await.unwrap();
    let dead_ids: HashSet<&str> = dead.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(dead_ids, poison.iter().map(|r| r.id.as_str()).collect());
    for (id, reason) in &dead {
        assert!(reason.contains("is not a revision name"), "{id}: {reason}");
    }

    // Nothing is left for the sweep to trip on, and counting goes on.
    assert_eq!(agg.sweep(std::time::Duration::ZERO, 100).await.unwrap(), 0);
    let later = reported("Eva", "ingest-00002");
    cases
        .insert(std::slice::from_ref(&later), WritePath::Grpc)
        .await
        .unwrap();
    assert_eq!(agg.count(&[later.id]).await.unwrap().len(), 1);
    assert_eq!(agg.totals().await.unwrap().total, 3);
    assert_eq!(cases.count(None).await.unwrap(), 3);
}
