//! Nothing a writer stored can stop counting: a revision that cannot be a
//! field name is counted under a safe one, and a counting record this
//! version cannot read is moved to the dead letters with its reason while
//! the batches counted with it go through. The counters keep agreeing with
//! the stored documents.

use chrono::Utc;
use events::{Case, Reported, WritePath};
use mongodb::bson::{DateTime, doc};
use store::Keys;
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

async fn stores(name: &str) -> (Mongo, CaseStore, Aggregator) {
    let s = stack::testing::servers();
    let mongo = Mongo::connect_lazy(&MongoConfig {
        uri: s.mongodb_uri.clone(),
        database: stack::testing::unique(name),
    })
    .await
    .unwrap();
    let keys = Keys::new(format!("{}:", stack::testing::unique(name)));
    let redis = RedisStats::new(runtime::redis::connect_lazy(&s.redis_url).unwrap(), keys);
    let cases = CaseStore::new(mongo.clone());
    let agg = Aggregator::new(mongo.clone(), redis);
    (mongo, cases, agg)
}

#[tokio::test]
async fn revisions_an_older_writer_stored_unchecked_are_counted_and_agree_with_the_documents() {
    let (_, cases, agg) = stores("dead_letters_rev").await;
    // Stored by a writer that did not check revisions (an older version).
    let all = [
        reported("Ana", "ingest-00001"),
        reported("Luis", "ingest-00001"),
        reported("Eva", ""),
        reported("Juan", "bad\u{0}rev"),
        reported("Rosa", "a.b$c"),
    ];
    let batch = cases.insert(&all, WritePath::Grpc).await.unwrap().batch;
    let counted = agg
        .count_batches(&[batch.unwrap()])
        .await
        .expect("one flush counts them all");
    assert_eq!(counted.deltas.cases, 5);
    let totals = agg.totals().await.unwrap();
    assert_eq!(totals.total, 5);
    assert_eq!(
        totals.total,
        cases.count(None).await.unwrap(),
        "counters equal documents"
    );
    assert_eq!(totals.by_revision["ingest-00001"], 2);
    assert_eq!(agg.sweep(std::time::Duration::ZERO, 100).await.unwrap(), 0);
}

#[tokio::test]
async fn a_counting_record_this_version_cannot_read_is_dead_lettered_and_the_rest_counted() {
    let (mongo, cases, agg) = stores("dead_letters_record").await;
    let good = [
        reported("Ana", "ingest-00001"),
        reported("Luis", "ingest-00001"),
    ];
    let batch = cases
        .insert(&good, WritePath::Grpc)
        .await
        .unwrap()
        .batch
        .unwrap();
    mongo
        .collection(store::mongo::BATCHES)
        .insert_one(doc! {"_id": "b-from-the-future", "created": DateTime::now(), "cases": "two"})
        .await
        .unwrap();

    let counted = agg
        .count_batches(&[batch, "b-from-the-future".to_owned()])
        .await
        .expect("the readable batch is counted");
    assert_eq!(counted.deltas.cases, 2);
    assert_eq!(agg.totals().await.unwrap().total, 2);
    assert_eq!(
        cases.count(None).await.unwrap(),
        2,
        "counters equal documents"
    );
    let dead = agg.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "b-from-the-future");
    assert!(dead[0].1.contains("cannot read"), "{dead:?}");
    // Nothing is left for the sweep to trip on, and counting goes on.
    assert_eq!(
        mongo
            .collection(store::mongo::BATCHES)
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );
    assert_eq!(agg.sweep(std::time::Duration::ZERO, 100).await.unwrap(), 0);
    let later = cases
        .insert(&[reported("Eva", "ingest-00002")], WritePath::Grpc)
        .await
        .unwrap()
        .batch
        .unwrap();
    assert_eq!(agg.count_batches(&[later]).await.unwrap().deltas.cases, 1);
    assert_eq!(agg.totals().await.unwrap().total, 3);
}
