//! The Redis half of the statistics: age buckets, the last cases, and
//! per-second counters for live rates. Each aggregation flush is applied by
//! one Lua script, atomically and at most once (a marker per flush id), so a
//! replayed flush changes nothing.

use std::collections::BTreeMap;

use crate::Keys;
use events::{AGE_BUCKETS, StoredCase};

use crate::batch::Deltas;
pub use crate::batch::RECENT_KEEP;
use redis::aio::ConnectionManager;
use serde::Serialize;

/// Seconds of per-second counters kept (the dashboard shows the last 60).
pub const RATE_KEEP_S: i64 = 120;
/// How long a flush marker is kept; replays come within seconds.
const APPLIED_TTL_S: i64 = 86_400;

const APPLY: &str = r#"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i = 2
for b = 1, 10 do
  local n = tonumber(ARGV[i]); i = i + 1
  if n > 0 then redis.call('HINCRBY', KEYS[2], ARGV[i], n) end
  i = i + 1
end
local nt = tonumber(ARGV[i]); i = i + 1
for _ = 1, nt do redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2 end
redis.call('HSET', KEYS[3], 'updated_ms', ARGV[i]); i = i + 1
local nr = tonumber(ARGV[i]); i = i + 1
for k = nr, 1, -1 do redis.call('LPUSH', KEYS[4], ARGV[i + k - 1]) end
i = i + nr
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[i]) - 1); i = i + 1
for k = 5, 6 do
  local nz = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nz do redis.call('ZINCRBY', KEYS[k], -tonumber(ARGV[i + 1]), ARGV[i]); i = i + 2 end
end
local keep = ARGV[i]; i = i + 1
for k = 7, #KEYS do
  local nf = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nf do redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i + 1]); i = i + 2 end
  redis.call('EXPIRE', KEYS[k], keep)
end
return 1
"#;

/// A ranking kept as a sorted set: member = the name, score = minus its
/// cases, so an ascending range is most cases first, ties by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    Areas,
    States,
}

#[derive(Clone)]
pub struct RedisStats {
    conn: ConnectionManager,
    keys: Keys,
    script: std::sync::Arc<redis::Script>,
}

/// Counts of one second, for the rate chart.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Second {
    pub t: i64,
    pub by_path: BTreeMap<String, u64>,
    pub by_revision: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgeBucket {
    pub range: &'static str,
    pub cases: u64,
}

impl RedisStats {
    pub fn new(conn: ConnectionManager, keys: Keys) -> RedisStats {
        RedisStats {
            conn,
            keys,
            script: std::sync::Arc::new(redis::Script::new(APPLY)),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Applies one flush's deltas; `false` if it was applied before.
    pub async fn apply(
        &self,
        flush_id: &str,
        deltas: &Deltas,
        now_ms: i64,
    ) -> redis::RedisResult<bool> {
        let ages = &deltas.ages;
        let totals = deltas.counter_totals();
        let rate = &deltas.seconds;
        let newest = &deltas.recent;

        let mut inv = self.script.prepare_invoke();
        inv.key(self.keys.applied(flush_id))
            .key(self.keys.age_buckets())
            .key(self.keys.totals())
            .key(self.keys.recent_cases())
            .key(self.rank_key(Ranking::Areas))
            .key(self.rank_key(Ranking::States));
        inv.arg(APPLIED_TTL_S);
        for (n, label) in ages.iter().zip(AGE_BUCKETS) {
            inv.arg(*n).arg(label);
        }
        inv.arg(totals.len());
        for (f, n) in &totals {
            inv.arg(f).arg(*n);
        }
        inv.arg(now_ms);
        inv.arg(newest.len());
        for c in newest {
            inv.arg(serde_json::to_string(c).expect("a case serializes"));
        }
        inv.arg(RECENT_KEEP);
        for counts in [&deltas.areas, &deltas.states] {
            inv.arg(counts.len());
            for (name, n) in counts {
                inv.arg(name).arg(*n);
            }
        }
        inv.arg(RATE_KEEP_S);
        for (sec, counts) in rate {
            inv.key(self.keys.rate(*sec));
            inv.arg(counts.len());
            for (f, n) in counts {
                inv.arg(f).arg(*n);
            }
        }
        let applied: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(applied == 1)
    }

    fn rank_key(&self, which: Ranking) -> String {
        let name = match which {
            Ranking::Areas => "rank:areas",
            Ranking::States => "rank:states",
        };
        format!("{}{name}", self.keys.prefix())
    }

    /// The `n` names with most cases, largest first (ties by name), with
    /// their cases: O(log names + n), however many names clients invent.
    pub async fn top(&self, which: Ranking, n: usize) -> redis::RedisResult<Vec<(String, u64)>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.rank_key(which))
            .arg(0)
            .arg(n - 1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw
            .into_iter()
            .map(|(name, score)| (name, (-score).max(0.0) as u64))
            .collect())
    }

    /// Age buckets in order, all ten.
    pub async fn ages(&self) -> redis::RedisResult<Vec<AgeBucket>> {
        let h: BTreeMap<String, u64> = redis::cmd("HGETALL")
            .arg(self.keys.age_buckets())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(AGE_BUCKETS
            .iter()
            .map(|r| AgeBucket {
                range: r,
                cases: h.get(*r).copied().unwrap_or(0),
            })
            .collect())
    }

    /// The last `n` cases, newest first.
    pub async fn recent(&self, n: usize) -> redis::RedisResult<Vec<StoredCase>> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.recent_cases())
            .arg(0)
            .arg(n.saturating_sub(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// Counters by field (`cases`, `path:*`, `rev:*`) plus `updated_ms`.
    pub async fn totals(&self) -> redis::RedisResult<BTreeMap<String, i64>> {
        redis::cmd("HGETALL")
            .arg(self.keys.totals())
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Per-second counts for the `window` seconds before `now_s` (oldest first), in one round trip.
    pub async fn series(&self, now_s: i64, window: i64) -> redis::RedisResult<Vec<Second>> {
        let mut pipe = redis::pipe();
        let secs: Vec<i64> = (now_s - window + 1..=now_s).collect();
        for s in &secs {
            pipe.cmd("HGETALL").arg(self.keys.rate(*s));
        }
        let hashes: Vec<BTreeMap<String, u64>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(secs
            .into_iter()
            .zip(hashes)
            .map(|(t, h)| {
                let mut s = Second {
                    t,
                    ..Default::default()
                };
                for (k, v) in h {
                    if let Some(p) = k.strip_prefix("path:") {
                        s.by_path.insert(p.to_owned(), v);
                    } else if let Some(r) = k.strip_prefix("rev:") {
                        s.by_revision.insert(r.to_owned(), v);
                    }
                }
                s
            })
            .collect())
    }
}
