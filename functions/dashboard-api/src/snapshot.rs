//! What the dashboard shows, read from the materialised statistics: every
//! read is O(number of areas, states or seconds shown), never O(cases).

use std::collections::BTreeMap;

use chrono::Utc;
use events::{StoredCase, WritePath};
use serde::Serialize;
use store::redis_stats::{AgeBucket, Second};
use store::{Aggregator, AreaCount, StateCount};

/// Seconds of history behind the live rates.
pub const WINDOW_S: i64 = 60;

#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub window_s: i64,
    pub total: f64,
    pub by_path: BTreeMap<String, f64>,
    pub by_revision: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total: u64,
    pub by_path: BTreeMap<String, u64>,
    pub by_revision: BTreeMap<String, u64>,
    pub rate: Rate,
    pub series: Vec<Second>,
    pub updated_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub summary: Summary,
    pub top_areas: Vec<AreaCount>,
    pub states: Vec<StateCount>,
    pub recent: Vec<StoredCase>,
    pub ages: Vec<AgeBucket>,
}

/// Why the statistics could not be read: the store that failed, and how.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("Redis did not answer: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("MongoDB did not answer: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

pub async fn summary(agg: &Aggregator) -> Result<Summary, ReadError> {
    let now_s = Utc::now().timestamp();
    // The current second is still filling: the window ends at the last full one.
    let (totals, series, redis_totals) = tokio::join!(
        agg.totals(),
        agg.redis().series(now_s - 1, WINDOW_S),
        agg.redis().totals()
    );
    let totals = totals?;
    let series = series?;
    let updated_ms = redis_totals?.get("updated_ms").copied();
    let mut by_path: BTreeMap<String, u64> = WritePath::ALL
        .iter()
        .map(|p| (p.as_str().to_owned(), 0))
        .collect();
    by_path.extend(totals.by_path);
    let mut rate = Rate {
        window_s: WINDOW_S,
        total: 0.0,
        by_path: BTreeMap::new(),
        by_revision: BTreeMap::new(),
    };
    for p in WritePath::ALL {
        rate.by_path.insert(p.as_str().to_owned(), 0.0);
    }
    for s in &series {
        for (p, n) in &s.by_path {
            *rate.by_path.entry(p.clone()).or_default() += *n as f64;
            rate.total += *n as f64;
        }
        for (r, n) in &s.by_revision {
            *rate.by_revision.entry(r.clone()).or_default() += *n as f64;
        }
    }
    let w = WINDOW_S as f64;
    rate.total /= w;
    rate.by_path.values_mut().for_each(|v| *v /= w);
    rate.by_revision.values_mut().for_each(|v| *v /= w);
    Ok(Summary {
        total: totals.total,
        by_path,
        by_revision: totals.by_revision,
        rate,
        series,
        updated_ms,
    })
}

pub async fn snapshot(agg: &Aggregator) -> Result<Snapshot, ReadError> {
    let (summary, top, states, recent, ages) = tokio::join!(
        summary(agg),
        agg.top_areas(3),
        agg.states(),
        agg.redis().recent(5),
        agg.redis().ages()
    );
    Ok(Snapshot {
        summary: summary?,
        top_areas: top?,
        states: states?,
        recent: recent?,
        ages: ages?,
    })
}
