//! The counting outbox: what one stored batch adds to the statistics.
//!
//! A writer stores a batch's new cases and one [`Deltas`] record of that
//! batch in one MongoDB transaction, so a case is never stored without its
//! count, and costs the database one write on the hot path. The aggregate
//! applies records and deletes them in one transaction: the deletion is the
//! "counted" mark. Recovery after a crash replays records, not cases.
//!
//! Deltas merge: an aggregate flush adds up many batches' records and applies
//! one `$inc` per area and state, so counting costs O(1) per batch.
//!
//! A record also holds the SHA-256 `digest` of its deltas' BSON, and a
//! small record's deltas travel in its `case.stored` event too
//! ([`Record::carried`]). The aggregate then deletes the record by id *and*
//! digest instead of reading it first: the deltas it applies are the
//! record's own or nothing is deleted, so an event can make counting cheaper
//! but never change what is counted.

use std::collections::BTreeMap;

use events::{AGE_BUCKETS, StoredCase};
use mongodb::bson::{Bson, DateTime, Document, doc};

/// Most cases one write may store (one counting record): with every text
/// field at its limit and every area and state distinct, a record of this
/// many cases is 6.5 MB (measured by the test below), 40% of MongoDB's
/// 16 MiB document limit.
pub const RECORD_MAX_CASES: usize = 10_000;

/// Largest deltas (BSON bytes) a `case.stored` event carries: a normal
/// write's are a few KiB whatever its size (at most [`RECENT_KEEP`] recent
/// cases); only cases with long, all-distinct texts exceed it, and their
/// records are read instead.
pub const CARRIED_MAX_BYTES: usize = 16 * 1024;

/// How many recent cases a record carries for the dashboard's "last cases"
/// (Redis keeps the newest of them).
pub const RECENT_KEEP: usize = 20;

/// The statistics one or more batches add.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deltas {
    /// Cases in these batches.
    pub cases: i64,
    pub areas: BTreeMap<String, i64>,
    pub states: BTreeMap<String, i64>,
    /// Per write path and serving revision (the revision as sent; MongoDB
    /// field names get [`field_safe`] when applied).
    pub routes: BTreeMap<(String, Option<String>), i64>,
    /// Cases per age bucket, in [`AGE_BUCKETS`] order.
    pub ages: [i64; AGE_BUCKETS.len()],
    /// Per stored second: counter field (`cases`, `path:*`, `rev:*`) to count,
    /// for the live rate chart.
    pub seconds: BTreeMap<i64, BTreeMap<String, i64>>,
    /// The newest cases, newest first, at most [`RECENT_KEEP`].
    pub recent: Vec<StoredCase>,
}

/// A name as a MongoDB field name: never empty, no `.`, `$` or NUL (receivers
/// refuse such revisions; this keeps one that slipped through from making
/// the counting transaction fail for good).
pub fn field_safe(s: &str) -> String {
    if s.is_empty() {
        return "_".to_owned();
    }
    s.replace(['.', '$', '\0'], "_")
}

impl Deltas {
    /// What these newly stored cases add.
    pub fn of(cases: &[StoredCase]) -> Deltas {
        let mut d = Deltas::default();
        for c in cases {
            d.cases += 1;
            *d.areas.entry(c.case.location.to_string()).or_default() += 1;
            *d.states.entry(c.case.state.to_string()).or_default() += 1;
            *d.routes
                .entry((c.path.as_str().to_owned(), c.revision.clone()))
                .or_default() += 1;
            d.ages[c.case.age_bucket()] += 1;
            let sec = d.seconds.entry(c.stored_ms.div_euclid(1000)).or_default();
            for field in counter_fields(c) {
                *sec.entry(field).or_default() += 1;
            }
        }
        let mut newest: Vec<&StoredCase> = cases.iter().collect();
        newest.sort_by(|a, b| b.id.cmp(&a.id));
        d.recent = newest.into_iter().take(RECENT_KEEP).cloned().collect();
        d
    }

    /// Adds `other` to these deltas (an aggregate flush of many batches).
    pub fn merge(&mut self, other: Deltas) {
        self.cases += other.cases;
        add_all(&mut self.areas, other.areas);
        add_all(&mut self.states, other.states);
        add_all(&mut self.routes, other.routes);
        for (a, b) in self.ages.iter_mut().zip(other.ages) {
            *a += b;
        }
        for (sec, fields) in other.seconds {
            add_all(self.seconds.entry(sec).or_default(), fields);
        }
        self.recent.extend(other.recent);
        self.recent.sort_by(|a, b| b.id.cmp(&a.id));
        self.recent.truncate(RECENT_KEEP);
    }

    /// Cases per write path.
    pub fn by_path(&self) -> BTreeMap<&str, i64> {
        let mut m = BTreeMap::new();
        for ((p, _), n) in &self.routes {
            *m.entry(p.as_str()).or_default() += n;
        }
        m
    }

    /// Cases per serving revision (cases without one left out).
    pub fn by_revision(&self) -> BTreeMap<&str, i64> {
        let mut m = BTreeMap::new();
        for ((_, r), n) in &self.routes {
            if let Some(r) = r {
                *m.entry(r.as_str()).or_default() += n;
            }
        }
        m
    }

    /// The Redis counter fields and their totals (`cases`, `path:*`, `rev:*`).
    pub fn counter_totals(&self) -> BTreeMap<String, i64> {
        let mut t = BTreeMap::new();
        if self.cases > 0 {
            t.insert("cases".to_owned(), self.cases);
        }
        for (p, n) in self.by_path() {
            t.insert(format!("path:{p}"), n);
        }
        for (r, n) in self.by_revision() {
            t.insert(format!("rev:{r}"), n);
        }
        t
    }

    /// The record as a BSON document. Keys that come from client text
    /// (areas, states, revisions) are stored as `[key, count]` pairs, never
    /// as field names, so no client string can become a path or an operator.
    pub fn to_doc(&self) -> Document {
        let pairs = |m: &BTreeMap<String, i64>| -> Vec<Bson> {
            m.iter()
                .map(|(k, n)| Bson::Array(vec![Bson::String(k.clone()), Bson::Int64(*n)]))
                .collect()
        };
        let seconds: Vec<Bson> = self
            .seconds
            .iter()
            .map(|(s, m)| Bson::Array(vec![Bson::Int64(*s), Bson::Array(pairs(m))]))
            .collect();
        doc! {
            "cases": self.cases,
            "areas": pairs(&self.areas),
            "states": pairs(&self.states),
            "routes": self.routes.iter()
                .map(|((p, r), n)| Bson::Array(vec![
                    Bson::String(p.clone()),
                    r.clone().map(Bson::String).unwrap_or(Bson::Null),
                    Bson::Int64(*n),
                ]))
                .collect::<Vec<_>>(),
            "ages": self.ages.iter().map(|n| Bson::Int64(*n)).collect::<Vec<_>>(),
            "seconds": seconds,
            "recent": self.recent.iter()
                .map(|c| Bson::String(serde_json::to_string(c).expect("a case serializes")))
                .collect::<Vec<_>>(),
        }
    }

    /// Reads a record back; `None` if it is not one of ours.
    pub fn from_doc(d: &Document) -> Option<Deltas> {
        let pairs = |b: &Bson| -> Option<BTreeMap<String, i64>> {
            b.as_array()?
                .iter()
                .map(|p| {
                    let p = p.as_array()?;
                    Some((p.first()?.as_str()?.to_owned(), as_i64(p.get(1)?)?))
                })
                .collect()
        };
        let mut ages = [0i64; AGE_BUCKETS.len()];
        for (a, b) in ages.iter_mut().zip(d.get_array("ages").ok()?) {
            *a = as_i64(b)?;
        }
        let mut routes = BTreeMap::new();
        for t in d.get_array("routes").ok()? {
            let t = t.as_array()?;
            let revision = match t.get(1)? {
                Bson::Null => None,
                r => Some(r.as_str()?.to_owned()),
            };
            routes.insert(
                (t.first()?.as_str()?.to_owned(), revision),
                as_i64(t.get(2)?)?,
            );
        }
        let mut seconds = BTreeMap::new();
        for s in d.get_array("seconds").ok()? {
            let s = s.as_array()?;
            seconds.insert(as_i64(s.first()?)?, pairs(s.get(1)?)?);
        }
        Some(Deltas {
            cases: as_i64(d.get("cases")?)?,
            areas: pairs(d.get("areas")?)?,
            states: pairs(d.get("states")?)?,
            routes,
            ages,
            seconds,
            recent: d
                .get_array("recent")
                .ok()?
                .iter()
                .filter_map(|b| serde_json::from_str(b.as_str()?).ok())
                .collect(),
        })
    }
}

/// The counting record of one stored batch.
pub struct Record {
    /// The outbox document: its id, when it was stored (the sweep replays
    /// records older than a bound), the digest of its deltas, and the deltas.
    pub doc: Document,
    /// The deltas' BSON when at most [`CARRIED_MAX_BYTES`], for the batch's
    /// `case.stored` event.
    pub carried: Option<Vec<u8>>,
}

impl Record {
    pub fn new(batch_id: &str, deltas: &Deltas) -> Record {
        let body = deltas.to_doc();
        let bytes = mongodb::bson::to_vec(&body).expect("deltas encode as BSON");
        let mut doc = doc! {"_id": batch_id, "created": DateTime::now(), "digest": digest(&bytes)};
        doc.extend(body);
        Record {
            doc,
            carried: (bytes.len() <= CARRIED_MAX_BYTES).then_some(bytes),
        }
    }
}

/// Deltas a `case.stored` event carried, and the digest its record must have
/// for them to be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    pub deltas: Deltas,
    pub digest: String,
}

impl Carried {
    /// Reads an event's `record` (standard base64 of the deltas' BSON), or
    /// says what is wrong with it.
    pub fn decode(base64_bson: &str) -> Result<Carried, String> {
        use base64::Engine;
        if base64_bson.len() > CARRIED_MAX_BYTES * 4 / 3 + 4 {
            return Err(format!(
                "record is longer than {CARRIED_MAX_BYTES} bytes of deltas"
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(base64_bson)
            .map_err(|e| format!("record is not standard base64: {e}"))?;
        let doc = Document::from_reader(bytes.as_slice())
            .map_err(|e| format!("record is not a BSON document: {e}"))?;
        let deltas = Deltas::from_doc(&doc).ok_or("record is not a batch's deltas")?;
        Ok(Carried {
            deltas,
            digest: digest(&bytes),
        })
    }

    /// The `record` of a `case.stored` event: standard base64 of `bson`.
    pub fn encode(bson: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bson)
    }
}

/// SHA-256 of a record's deltas, in hex.
fn digest(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn add_all<K: Ord>(into: &mut BTreeMap<K, i64>, from: BTreeMap<K, i64>) {
    for (k, n) in from {
        *into.entry(k).or_default() += n;
    }
}

fn as_i64(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        _ => None,
    }
}

/// The Redis counter fields one case adds to.
fn counter_fields(c: &StoredCase) -> Vec<String> {
    let mut f = vec!["cases".to_owned(), format!("path:{}", c.path)];
    if let Some(r) = &c.revision {
        f.push(format!("rev:{r}"));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{Case, WritePath};

    fn case(id: &str, location: &str, age: i64, path: WritePath, rev: Option<&str>) -> StoredCase {
        StoredCase {
            id: id.to_owned(),
            case: Case::new("N", location, age, "communitary", "active").unwrap(),
            path,
            revision: rev.map(str::to_owned),
            reported_ms: 1_000,
            stored_ms: 2_500,
        }
    }

    #[test]
    fn a_record_round_trips_through_bson_and_merges_like_one_batch() {
        let a = vec![
            case("01", "Petén", 34, WritePath::Grpc, Some("v1")),
            case("02", "a.b$c", 70, WritePath::Grpc, None),
        ];
        let b = vec![case("03", "Petén", 5, WritePath::Redis, Some("v2"))];
        let (da, db) = (Deltas::of(&a), Deltas::of(&b));
        let record = Record::new("x", &da);
        assert_eq!(Deltas::from_doc(&record.doc).unwrap(), da);
        // What the event carries decodes to the same deltas and the digest
        // the record holds.
        let carried = Carried::decode(&Carried::encode(&record.carried.unwrap())).unwrap();
        assert_eq!(carried.deltas, da);
        assert_eq!(record.doc.get_str("digest").unwrap(), carried.digest);
        let mut merged = da.clone();
        merged.merge(db);
        let all: Vec<StoredCase> = a.into_iter().chain(b).collect();
        assert_eq!(merged, Deltas::of(&all));
        assert_eq!(merged.areas["Petén"], 2);
        assert_eq!(merged.recent[0].id, "03");
        assert_eq!(merged.counter_totals()["cases"], 3);
        assert_eq!(merged.counter_totals()["rev:v2"], 1);
    }

    #[test]
    fn the_largest_batch_record_stays_far_below_mongodbs_document_limit() {
        // RECORD_MAX_CASES cases with every text field at its 200-character
        // limit and every area and state distinct.
        let long = |i: usize, c: char| format!("{i:05}{}", c.to_string().repeat(195));
        let cases: Vec<StoredCase> = (0..RECORD_MAX_CASES)
            .map(|i| StoredCase {
                id: format!("{i:036}"),
                case: Case::new(
                    &long(i, 'n'),
                    &long(i, 'l'),
                    130,
                    &long(i, 'i'),
                    &long(i, 's'),
                )
                .unwrap(),
                path: WritePath::Redis,
                revision: Some("r".repeat(63)),
                reported_ms: i as i64,
                stored_ms: i as i64 * 1000,
            })
            .collect();
        let record = Record::new("b-x", &Deltas::of(&cases));
        // Far past what an event carries: this record is read, not carried.
        assert!(record.carried.is_none());
        let bytes = mongodb::bson::to_vec(&record.doc).unwrap();
        println!(
            "a record of {RECORD_MAX_CASES} cases: {} bytes",
            bytes.len()
        );
        assert!(bytes.len() < 8 << 20, "{} bytes", bytes.len());
    }
}
