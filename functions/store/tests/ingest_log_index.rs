//! The ingest log's TTL index belongs to ingest alone: case writes, counts
//! and sweeps never create or depend on it, and a changed
//! `INGEST_LOG_TTL_S` changes the TTL in place instead of conflicting.
//! (A real MongoDB answers a second `createIndexes` with other options with
//! IndexOptionsConflict; the local server does not, so these tests check
//! who touches the index and what TTL it ends with.)

use std::time::Duration;

use chrono::Utc;
use events::{Case, Reported, WritePath};
use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::doc;
use store::Keys;
use store::testing::Stores;
use store::{Aggregator, CaseStore, IngestLog, LogRecord, Mongo, RedisStats};

async fn mongo() -> Mongo {
    Stores::new("ingest_log_index").await.mongo
}

/// The `expireAfterSeconds` of the index on `ingest_log.time`, read from
/// the server; `None` when there is no such index (or no collection).
async fn ingest_log_ttl(mongo: &Mongo) -> Option<u64> {
    let indexes: Vec<IndexModel> = match mongo.collection("ingest_log").list_indexes().await {
        Ok(cursor) => cursor.try_collect().await.unwrap(),
        Err(_) => return None,
    };
    indexes
        .into_iter()
        .find(|i| i.keys == doc! {"time": 1})
        .map(|i| {
            i.options
                .and_then(|o| o.expire_after)
                .map_or(0, |d| d.as_secs())
        })
}

fn entry() -> LogRecord {
    LogRecord {
        time_ms: Utc::now().timestamp_millis(),
        path: "grpc".into(),
        result: "accepted".into(),
        reason: String::new(),
        requests: 1,
        cases: 1,
        bytes: 90,
        revision: "ingest-00001".into(),
    }
}

#[tokio::test]
async fn case_writes_counts_and_sweeps_never_create_the_ingest_log_index() {
    let mongo = mongo().await;
    let keys = Keys::new(format!("{}:", stack::testing::unique("ingest_log_index")));
    let redis = RedisStats::new(
        runtime::redis::connect_lazy(&stack::testing::servers().redis_url).unwrap(),
        keys,
    );
    let cases = CaseStore::new(mongo.clone());
    let agg = Aggregator::new(mongo.clone(), redis);
    let r = Reported {
        id: Reported::new_id(),
        case: Case::new("Ana", "Escuintla", 30, "communitary", "active").unwrap(),
        time: Utc::now(),
        revision: Some("ingest-00001".into()),
        traceparent: None,
    };
    cases
        .insert(std::slice::from_ref(&r), WritePath::Grpc)
        .await
        .unwrap();
    assert_eq!(cases.count(None).await.unwrap(), 1);
    agg.sweep(Duration::ZERO, 10).await.unwrap();
    assert_eq!(agg.totals().await.unwrap().total, 1);
    // The dashboard reads the log without owning its index either.
    IngestLog::new(mongo.clone()).latest(10).await.unwrap();
    assert_eq!(
        ingest_log_ttl(&mongo).await,
        None,
        "a case write, count or sweep created the ingest log's index"
    );
}

#[tokio::test]
async fn two_ingest_log_ttls_converge_on_the_latest_through_coll_mod() {
    let mongo = mongo().await;
    let day = IngestLog::owner(mongo.clone(), Duration::from_secs(86_400));
    day.write(&[entry()]).await.unwrap();
    assert_eq!(ingest_log_ttl(&mongo).await, Some(86_400));
    // A new revision of ingest with another INGEST_LOG_TTL_S.
    let hour = IngestLog::owner(mongo.clone(), Duration::from_secs(3_600));
    hour.write(&[entry()]).await.unwrap();
    assert_eq!(ingest_log_ttl(&mongo).await, Some(3_600));
    // Rolled back: the old TTL again, with no error on either side.
    day.ensure_ttl_index(Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(ingest_log_ttl(&mongo).await, Some(86_400));
    assert_eq!(day.ttl_seconds().await.unwrap(), Some(86_400));
    assert_eq!(IngestLog::new(mongo).latest(10).await.unwrap().len(), 2);
}
