//! Traffic: the cases to send and the request bodies built from them.
//!
//! Bodies are serialized once, before the run, into a pool of [`Bytes`];
//! a request clones one (a reference count) instead of serializing.

use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use events::Case;
use http::HeaderValue;
use rand::Rng;

/// The built-in traffic file, so the binary works from any directory.
pub const DEFAULT_TRAFFIC: &str = include_str!("../traffic.json");

/// Distinct batch bodies to pre-build; enough that the server does not see
/// the same few bodies over and over.
const POOL_BODIES: usize = 4096;
/// Memory cap for the pool, so that huge batches still fit.
const POOL_BYTES: usize = 64 << 20;

/// Reads and validates a traffic file: a JSON array of cases.
pub fn load(file: Option<&Path>) -> anyhow::Result<Vec<Case>> {
    let (name, text) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the traffic file {}", path.display()))?;
            (path.display().to_string(), text)
        }
        None => (
            "the built-in traffic.json".to_owned(),
            DEFAULT_TRAFFIC.to_owned(),
        ),
    };
    parse(&text).with_context(|| format!("{name} is not a usable traffic file"))
}

/// Parses a JSON array of cases with the events crate's own checks.
pub fn parse(text: &str) -> anyhow::Result<Vec<Case>> {
    if !text.trim_start().starts_with('[') {
        anyhow::bail!(
            "expected a JSON array of cases; write one with `loadtest gen --count 1000 --out FILE`"
        );
    }
    events::parse_json_body(text.as_bytes()).map_err(|e| {
        let at = match (e.index, &e.field) {
            (Some(i), Some(f)) => format!("case {i}, field {f}: "),
            (Some(i), None) => format!("case {i}: "),
            _ => String::new(),
        };
        anyhow::anyhow!("{at}{}", e.message)
    })
}

/// How cases go into a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// `None`: one case object; `Some(n)`: n cases (a JSON array or n NDJSON lines).
    pub batch: Option<u32>,
    pub ndjson: bool,
}

impl Shape {
    pub fn cases_per_body(&self) -> u32 {
        self.batch.unwrap_or(1)
    }

    pub fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static(if self.ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        })
    }
}

/// Pre-serialized request bodies to pick from at random.
#[derive(Debug, Clone)]
pub struct BodyPool {
    bodies: Vec<Bytes>,
    pub cases_per_body: u64,
    pub content_type: HeaderValue,
}

impl BodyPool {
    pub fn build(cases: &[Case], shape: Shape, rng: &mut impl Rng) -> BodyPool {
        assert!(!cases.is_empty(), "a traffic file has at least one case");
        let per = shape.cases_per_body() as usize;
        let encoded: Vec<Vec<u8>> = cases
            .iter()
            .map(|c| serde_json::to_vec(c).expect("a Case always serializes"))
            .collect();
        let bodies = if per == 1 && shape.batch.is_none() && !shape.ndjson {
            // Single cases: every case once is already the best pool.
            encoded.into_iter().map(Bytes::from).collect()
        } else {
            let avg = encoded.iter().map(Vec::len).sum::<usize>() / encoded.len() + 1;
            let count = (POOL_BYTES / (avg * per)).clamp(1, POOL_BODIES);
            (0..count)
                .map(|_| Bytes::from(batch_body(&encoded, per, shape.ndjson, rng)))
                .collect()
        };
        BodyPool {
            bodies,
            cases_per_body: per as u64,
            content_type: shape.content_type(),
        }
    }

    pub fn pick(&self, rng: &mut impl Rng) -> Bytes {
        self.bodies[rng.random_range(0..self.bodies.len())].clone()
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }
}

fn batch_body(encoded: &[Vec<u8>], per: usize, ndjson: bool, rng: &mut impl Rng) -> Vec<u8> {
    let mut body = Vec::with_capacity(per * (encoded[0].len() + 2) + 2);
    if !ndjson {
        body.push(b'[');
    }
    for i in 0..per {
        if i > 0 && !ndjson {
            body.push(b',');
        }
        body.extend_from_slice(&encoded[rng.random_range(0..encoded.len())]);
        if ndjson {
            body.push(b'\n');
        }
    }
    if !ndjson {
        body.push(b']');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn built_in_traffic_is_valid_and_realistic() {
        let cases = load(None).unwrap();
        assert!((150..=300).contains(&cases.len()), "{}", cases.len());
        let departments: std::collections::BTreeSet<_> =
            cases.iter().map(|c| c.location.as_str()).collect();
        for d in departments.iter() {
            assert!(
                crate::generate::DEPARTMENTS
                    .iter()
                    .any(|(name, ..)| name == d),
                "{d} is not a department"
            );
        }
        assert!(
            departments.len() >= 18,
            "most departments appear: {departments:?}"
        );
        assert!(
            cases
                .iter()
                .all(|c| ["communitary", "imported"].contains(&c.infectedtype.as_str()))
        );
        assert!(cases.iter().all(|c| {
            ["active", "recovered", "deceased", "hospitalized"].contains(&c.state.as_str())
        }));
    }

    #[test]
    fn bad_files_name_the_case_and_field() {
        let e = parse(r#"[{"name":"A","location":"Zacapa","age":30,"infectedtype":"imported","state":"active"},
                         {"name":"B","location":"Zacapa","age":300,"infectedtype":"imported","state":"active"}]"#)
            .unwrap_err();
        assert!(e.to_string().contains("case 1, field age"), "{e}");
        assert!(parse("{}").unwrap_err().to_string().contains("JSON array"));
        assert!(
            load(Some(Path::new("/nonexistent/traffic.json")))
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }

    #[test]
    fn bodies_parse_back_with_the_right_count() {
        let cases = load(None).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let single = BodyPool::build(
            &cases,
            Shape {
                batch: None,
                ndjson: false,
            },
            &mut rng,
        );
        assert_eq!(single.len(), cases.len());
        assert_eq!(
            events::parse_json_body(&single.pick(&mut rng))
                .unwrap()
                .len(),
            1
        );
        assert!(single.pick(&mut rng).starts_with(b"{"));

        let batch = BodyPool::build(
            &cases,
            Shape {
                batch: Some(7),
                ndjson: false,
            },
            &mut rng,
        );
        assert_eq!((batch.len(), batch.cases_per_body), (POOL_BODIES, 7));
        assert_eq!(
            events::parse_json_body(&batch.pick(&mut rng))
                .unwrap()
                .len(),
            7
        );

        let nd = BodyPool::build(
            &cases,
            Shape {
                batch: Some(3),
                ndjson: true,
            },
            &mut rng,
        );
        assert_eq!(nd.content_type, "application/x-ndjson");
        assert_eq!(
            events::parse_ndjson_body(&nd.pick(&mut rng)).unwrap().len(),
            3
        );

        let one_array = BodyPool::build(
            &cases,
            Shape {
                batch: Some(1),
                ndjson: false,
            },
            &mut rng,
        );
        assert!(one_array.pick(&mut rng).starts_with(b"["));
    }
}
