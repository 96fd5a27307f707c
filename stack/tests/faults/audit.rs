//! The audit of what ended up stored against what the load was answered:
//! the README's guarantees seen from the client's side. Every case answered
//! 202 is stored exactly once; a case answered 503 is not stored at all; a
//! case answered 504 (or any other 5xx, or never answered) is stored at most
//! once.

use std::collections::HashMap;

use super::load::{Answer, Sent};

/// A stored case as the audit sees it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub name: String,
}

/// What was sent, answered and stored, and every broken guarantee.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Cases sent.
    pub sent: usize,
    /// Cases answered 202.
    pub accepted: usize,
    /// Cases answered 5xx or not answered at all: each may be stored at most once.
    pub failed: usize,
    /// Of those, cases answered 503: none of them may be stored.
    pub refused: usize,
    /// Documents stored.
    pub stored: usize,
    /// Stored documents beyond the first of the same case (by id or by name).
    pub duplicates: usize,
    /// Cases answered 202 and not stored.
    pub lost: usize,
    /// Cases stored although they were answered 504 (outcome unknown), another
    /// 5xx, or not answered.
    pub stored_failed: usize,
    /// Cases stored although they were answered 503: a broken promise.
    pub stored_refused: usize,
    /// Every broken guarantee, in words.
    pub problems: Vec<String>,
}

/// At most this many ids are named in one problem.
const SHOW: usize = 5;

fn some<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.into_iter().take(SHOW).map(String::as_str).collect();
    v.join(", ")
}

impl Audit {
    /// Compares what the clients were answered with what is stored.
    pub fn new(sent: &[Sent], stored: &[Stored]) -> Audit {
        let mut a = Audit {
            stored: stored.len(),
            ..Audit::default()
        };
        // name → the id it was accepted under (None: answered 5xx or not at all).
        let mut expected: HashMap<&str, Option<&str>> = HashMap::new();
        let mut refused = Vec::new();
        let mut answered_503: std::collections::HashSet<&str> = Default::default();
        for s in sent {
            a.sent += s.names.len();
            match &s.answer {
                Answer::Accepted(ids) if ids.len() == s.names.len() => {
                    a.accepted += ids.len();
                    expected.extend(
                        s.names
                            .iter()
                            .map(String::as_str)
                            .zip(ids.iter().map(|i| Some(i.as_str()))),
                    );
                }
                Answer::Accepted(ids) => {
                    a.problems.push(format!(
                        "{}: 202 named {} ids for {} cases",
                        s.function,
                        ids.len(),
                        s.names.len()
                    ));
                    a.failed += s.names.len();
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
                Answer::Unavailable { status: 503, .. } => {
                    a.failed += s.names.len();
                    a.refused += s.names.len();
                    answered_503.extend(s.names.iter().map(String::as_str));
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
                Answer::Unavailable { .. } | Answer::Unanswered(_) => {
                    a.failed += s.names.len();
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
                Answer::Refused { status, body } => {
                    refused.push(format!("{} {status} {body}", s.function));
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
            }
        }
        if !refused.is_empty() {
            a.problems.push(format!(
                "{} requests of valid cases refused, e.g. {}",
                refused.len(),
                some(&refused)
            ));
        }

        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let mut by_name: HashMap<&str, Vec<&str>> = HashMap::new();
        for s in stored {
            *by_id.entry(&s.id).or_default() += 1;
            by_name.entry(&s.name).or_default().push(&s.id);
        }
        if by_id.len() != stored.len() {
            a.problems.push(format!(
                "{} ids are stored more than once",
                stored.len() - by_id.len()
            ));
        }
        a.duplicates = stored.len() - by_name.len();
        let twice: Vec<String> = by_name
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(n, ids)| format!("{n:?} as {}", ids.join(" and ")))
            .collect();
        if !twice.is_empty() {
            a.problems.push(format!(
                "{} cases stored more than once: {}",
                twice.len(),
                some(&twice)
            ));
        }

        let mut lost = Vec::new();
        let mut misfiled = Vec::new();
        for (name, id) in &expected {
            match (id, by_name.get(name)) {
                (Some(id), None) => lost.push(id.to_string()),
                (Some(id), Some(ids)) if !ids.contains(id) => misfiled.push(format!(
                    "{name:?} accepted as {id}, stored as {}",
                    ids.join(", ")
                )),
                (None, Some(_)) if answered_503.contains(name) => a.stored_refused += 1,
                (None, Some(_)) => a.stored_failed += 1,
                _ => {}
            }
        }
        a.lost = lost.len();
        if a.stored_refused > 0 {
            a.problems.push(format!(
                "{} cases answered 503 were stored: a 503 must mean nothing was stored",
                a.stored_refused
            ));
        }
        if !lost.is_empty() {
            lost.sort();
            a.problems.push(format!(
                "{} accepted cases not stored, e.g. {}",
                lost.len(),
                some(&lost)
            ));
        }
        if !misfiled.is_empty() {
            a.problems.push(format!(
                "{} accepted cases stored under another id: {}",
                misfiled.len(),
                some(&misfiled)
            ));
        }
        let strangers: Vec<String> = by_name
            .keys()
            .filter(|n| !expected.contains_key(*n))
            .map(|n| n.to_string())
            .collect();
        if !strangers.is_empty() {
            a.problems.push(format!(
                "{} stored cases were never sent: {}",
                strangers.len(),
                some(&strangers)
            ));
        }
        // The client-side form of "a 5xx'd case is stored at most once": it
        // cannot know those ids, only how many cases it was not promised.
        let distinct = by_name.len();
        if distinct > a.accepted + a.failed {
            a.problems.push(format!(
                "{distinct} distinct cases stored, more than the {} accepted plus the {} answered 5xx or not answered",
                a.accepted, a.failed
            ));
        }
        a
    }

    pub fn holds(&self) -> bool {
        self.problems.is_empty()
    }
}

mod tests {
    use super::*;

    fn sent(names: &[&str], answer: Answer) -> Sent {
        Sent {
            function: "ingest".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            answer,
        }
    }

    fn stored(pairs: &[(&str, &str)]) -> Vec<Stored> {
        pairs
            .iter()
            .map(|(id, name)| Stored {
                id: id.to_string(),
                name: name.to_string(),
            })
            .collect()
    }

    fn accepted(ids: &[&str]) -> Answer {
        Answer::Accepted(ids.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn a_504_case_may_be_stored_once_and_a_stored_503_case_is_a_problem() {
        let unavailable = |status| Answer::Unavailable {
            status,
            retry_after: None,
        };
        let log = [
            sent(&["a", "b"], accepted(&["1", "2"])),
            sent(&["c"], unavailable(504)),
            sent(&["d"], unavailable(503)),
        ];
        let a = Audit::new(&log, &stored(&[("1", "a"), ("2", "b"), ("9", "c")]));
        assert!(a.holds(), "{:?}", a.problems);
        assert_eq!(
            (
                a.sent,
                a.accepted,
                a.failed,
                a.refused,
                a.stored,
                a.stored_failed,
                a.stored_refused,
                a.duplicates,
                a.lost
            ),
            (4, 2, 2, 1, 3, 1, 0, 0, 0)
        );
        let b = Audit::new(&log, &stored(&[("1", "a"), ("2", "b"), ("8", "d")]));
        assert_eq!(b.stored_refused, 1);
        assert!(
            b.problems
                .iter()
                .any(|p| p.contains("answered 503 were stored")),
            "{:?}",
            b.problems
        );
    }

    #[test]
    fn a_lost_case_a_duplicate_and_a_stranger_are_named() {
        let log = [sent(&["a", "b"], accepted(&["1", "2"]))];
        let a = Audit::new(&log, &stored(&[("1", "a"), ("7", "a"), ("8", "z")]));
        assert_eq!((a.lost, a.duplicates), (1, 1));
        let all = a.problems.join("\n");
        assert!(all.contains("not stored, e.g. 2"), "{all}");
        assert!(all.contains("\"a\" as"), "{all}");
        assert!(all.contains("never sent: z"), "{all}");
    }

    #[test]
    fn an_accepted_case_under_another_id_and_a_4xx_are_problems() {
        let log = [
            sent(&["a"], accepted(&["1"])),
            sent(
                &["b"],
                Answer::Refused {
                    status: 400,
                    body: "no".into(),
                },
            ),
        ];
        let a = Audit::new(&log, &stored(&[("5", "a")]));
        assert!(
            a.problems
                .iter()
                .any(|p| p.contains("stored under another id")),
            "{:?}",
            a.problems
        );
        assert!(
            a.problems.iter().any(|p| p.contains("refused")),
            "{:?}",
            a.problems
        );
    }
}
