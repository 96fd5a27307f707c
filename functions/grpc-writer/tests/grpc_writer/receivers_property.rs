//! Every internal receiver of the gRPC path, driven with arbitrary events:
//! grpc-writer's `Write` and `WriteStream`, and aggregate's `POST /` with
//! arbitrary `case.stored` events. Whatever arrives, nothing panics, every
//! call is answered, every valid case is stored once and counted once, and
//! counting never gets stuck (the counters reach the documents). Both run
//! in-process against the real Redis and MongoDB-compatible server.

use crate::helpers;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use events::proto::ce;
use events::proto::writer::case_writer_client::CaseWriterClient;
use events::proto::writer::{WriteRequest, WriteStatus};
use events::{Case, Reported, StoredBatch};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// One event sent to grpc-writer.
#[derive(Debug, Clone)]
enum Input {
    /// A valid `case.reported` event.
    Valid(Reported),
    /// The n-th valid event sent so far, again (a redelivery).
    Again(usize),
    /// Anything at all in the protobuf format.
    Arbitrary(ce::CloudEvent),
}

fn valid() -> impl Strategy<Value = Reported> {
    (
        "[A-Za-z][A-Za-z ]{0,19}",
        prop::sample::select(vec!["Escuintla", "Petén", "Zacapa"]),
        0i64..=120,
        proptest::option::of("[a-z0-9-]{1,30}"),
    )
        .prop_map(|(name, location, age, revision)| Reported {
            id: Reported::new_id(),
            case: Case::new(&name, location, age, "communitary", "active").unwrap(),
            time: Utc::now(),
            revision,
            traceparent: None,
        })
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("bad\u{0}rev".to_owned()),
        Just("a.b$c".to_owned()),
        ".{0,12}",
        "[a-z0-9-]{1,70}",
    ]
}

fn arbitrary() -> impl Strategy<Value = ce::CloudEvent> {
    use ce::cloud_event::Data;
    use ce::cloud_event_attribute_value::Attr;
    let attr = prop_oneof![
        any_text().prop_map(Attr::CeString),
        any::<i32>().prop_map(Attr::CeInteger),
        any::<bool>().prop_map(Attr::CeBoolean),
    ]
    .prop_map(|a| ce::CloudEventAttributeValue { attr: Some(a) });
    let name = prop_oneof![
        Just("revision".to_owned()),
        Just("traceparent".to_owned()),
        "[a-z0-9_.]{0,8}",
    ];
    let case = (any_text(), any_text(), -5i64..200, any_text()).prop_map(|(n, l, a, s)| {
        format!(r#"{{"name":{n:?},"location":{l:?},"age":{a},"infectedtype":"x","state":{s:?}}}"#)
    });
    let data = prop_oneof![
        Just(None),
        case.prop_map(|c| Some(Data::TextData(c))),
        ".{0,30}".prop_map(|s| Some(Data::TextData(s))),
        prop::collection::vec(any::<u8>(), 0..30).prop_map(|b| Some(Data::BinaryData(b))),
    ];
    (
        prop_oneof![Just(Reported::new_id()), any_text()],
        prop_oneof![Just("/ingest".to_owned()), any_text()],
        prop_oneof![Just("1.0".to_owned()), any_text()],
        prop_oneof![Just(events::types::CASE_REPORTED.to_owned()), any_text()],
        prop::collection::hash_map(name, attr, 0..4),
        data,
    )
        .prop_map(
            |(id, source, spec_version, r#type, attributes, data)| ce::CloudEvent {
                id,
                source,
                spec_version,
                r#type,
                attributes: attributes.into_iter().collect::<HashMap<_, _>>(),
                data,
            },
        )
}

/// A valid event but for its `revision` extension, which is anything.
fn odd_revision() -> impl Strategy<Value = ce::CloudEvent> {
    (valid(), any_text()).prop_map(|(mut r, revision)| {
        r.revision = Some(revision);
        events::proto::to_proto(&r.to_event("/ingest"))
    })
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => valid().prop_map(Input::Valid),
        1 => any::<usize>().prop_map(Input::Again),
        2 => arbitrary().prop_map(Input::Arbitrary),
        1 => odd_revision().prop_map(Input::Arbitrary),
    ]
}

/// One round: events, and whether they go as one `Write` or a stream of
/// up to three messages.
fn round() -> impl Strategy<Value = (Vec<Input>, bool, usize)> {
    (
        prop::collection::vec(input(), 1..25),
        any::<bool>(),
        1usize..=3,
    )
}

/// What the model says grpc-writer must do with an arbitrary event.
fn is_valid(pe: &ce::CloudEvent) -> Option<String> {
    let e = events::proto::from_proto(pe.clone()).ok()?;
    Reported::from_event(&e).ok().map(|r| r.id)
}

#[tokio::test]
async fn arbitrary_events_at_every_internal_receiver_store_and_count_each_valid_case_once() {
    let p = helpers::start("receivers_property").await;
    let mut client = CaseWriterClient::connect(p.writer.clone()).await.unwrap();
    let http = stack::testing::http_client();
    let sink = runtime::Sink::new(&format!("{}/", p.aggregate), &[]);
    let mut runner = TestRunner::default();
    let mut sent: Vec<Reported> = Vec::new();
    let mut stored: HashSet<String> = HashSet::new();
    for round_no in 0..30 {
        let (inputs, stream, pieces) = round().new_tree(&mut runner).unwrap().current();
        let mut expected: Vec<Option<String>> = Vec::new();
        let mut events = Vec::new();
        for i in &inputs {
            let pe = match i {
                Input::Valid(r) => {
                    sent.push(r.clone());
                    events::proto::to_proto(&r.to_event("/ingest"))
                }
                Input::Again(n) if !sent.is_empty() => {
                    events::proto::to_proto(&sent[n % sent.len()].to_event("/ingest"))
                }
                Input::Again(_) => continue,
                Input::Arbitrary(pe) => pe.clone(),
            };
            expected.push(is_valid(&pe));
            events.push(pe);
        }
        // A message is stored whole or not at all: one invalid event
        // rejects every event of its message.
        let size = if stream {
            events.len().div_ceil(pieces).max(1)
        } else {
            events.len().max(1)
        };
        let results = if stream {
            let messages: Vec<WriteRequest> = events
                .chunks(size)
                .map(|c| WriteRequest { events: c.to_vec() })
                .collect();
            client.write_stream(tokio_stream::iter(messages)).await
        } else {
            client.write(WriteRequest { events }).await
        }
        .unwrap_or_else(|s| panic!("round {round_no}: the call failed: {s:?}; inputs {inputs:?}"))
        .into_inner()
        .results;
        assert_eq!(
            results.len(),
            expected.len(),
            "round {round_no}: one result per event"
        );
        for (results, expected) in results.chunks(size).zip(expected.chunks(size)) {
            let whole = expected.iter().all(Option::is_some);
            for (r, valid_id) in results.iter().zip(expected) {
                match valid_id {
                    Some(id) if whole => {
                        assert!(
                            r.status == WriteStatus::Stored as i32
                                || r.status == WriteStatus::Duplicate as i32,
                            "round {round_no}: a valid event was not stored: {r:?}"
                        );
                        stored.insert(id.clone());
                    }
                    _ => assert_eq!(
                        r.status,
                        WriteStatus::Rejected as i32,
                        "round {round_no}: an event of a refused message was not rejected: {r:?}"
                    ),
                }
            }
        }

        // aggregate `POST /`: batches it never stored (or already counted)
        // and junk, with no deltas, junk for deltas, or well-formed deltas
        // that are no record's own; each is answered and nothing is counted
        // twice or made up.
        let (junk, _, _) = round().new_tree(&mut runner).unwrap().current();
        for (i, j) in junk.iter().take(3).enumerate() {
            let batch: String = format!("b-{j:?}").chars().take(40).collect();
            let record = match i {
                0 => None,
                1 => Some(format!("{j:?}")),
                _ => Some(forged_deltas()),
            };
            let event = StoredBatch {
                batch,
                cases: 3,
                record,
            }
            .to_event("/test", None);
            if let Err(e) = sink.send(&event, None).await {
                assert!(e.is_retryable() || !e.to_string().is_empty(), "{e}");
            }
        }
        let garbage = http
            .post(format!("{}/", p.aggregate))
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("junk-{round_no}"))
            .header("ce-source", "/test")
            .header("ce-type", events::types::CASE_STORED)
            .header("content-type", "application/json")
            .body(format!("{junk:?}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            garbage.status(),
            400,
            "round {round_no}: junk data is a 400"
        );
    }
    p.wait_stored_and_counted(stored.len() as u64).await;
    // Nothing stays behind or arrives late: exactly once, after the sweeps too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.wait_stored_and_counted(stored.len() as u64).await;
    assert!(p.agg.dead_letters(10).await.unwrap().is_empty());
}

/// Well-formed deltas of three cases, as a `case.stored` event carries them,
/// that no stored record holds.
fn forged_deltas() -> String {
    let cases: Vec<events::StoredCase> = (0..3)
        .map(|i| events::StoredCase {
            id: format!("forged-{i}"),
            case: Case::new("F", "Petén", 30, "communitary", "active").unwrap(),
            path: events::WritePath::Grpc,
            revision: None,
            reported_ms: 0,
            stored_ms: 0,
        })
        .collect();
    let record = store::batch::Record::new("forged", &store::batch::Deltas::of(&cases));
    store::batch::Carried::encode(&record.carried.expect("small"))
}
