//! Property tests of the dashboard API's query parser (`query::Params`):
//! for any query string nothing panics and every refusal is a 400 naming
//! the parameter; valid values come back as sent; only hex-and-dash cursors
//! and case-like texts get through to MongoDB.

use dashboard_api::query::Params;
use proptest::prelude::*;

const KNOWN: [&str; 4] = ["limit", "after", "location", "state"];

/// `application/x-www-form-urlencoded`, every byte but unreserved ones escaped.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn refusal_names(e: &runtime::ApiError, key: &str) {
    assert_eq!(e.status, 400, "{e}");
    assert_eq!(e.field.as_deref(), Some(key), "{e}");
    assert!(
        e.error.contains(key),
        "the message names {key:?}: {}",
        e.error
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_query_string_is_parsed_or_refused_by_name(raw in "[ -~]{0,120}") {
        match Params::parse(Some(&raw), &KNOWN) {
            Ok(p) => {
                for (key, check) in [
                    ("limit", p.int("limit", 1, 100, 20).err()),
                    ("after", p.cursor("after").err()),
                    ("location", p.text("location").err()),
                    ("state", p.text("state").err()),
                ] {
                    if let Some(e) = check { refusal_names(&e, key) }
                }
            }
            Err(e) => {
                prop_assert_eq!(e.status, 400);
                prop_assert!(e.field.is_some(), "names the parameter: {}", e);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_percent_encoded_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), key in prop::sample::select(KNOWN.to_vec())) {
        let raw = format!("{key}={}", bytes.iter().map(|b| format!("%{b:02X}")).collect::<String>());
        let p = Params::parse(Some(&raw), &KNOWN).unwrap();
        let _ = (p.int(key, 1, 100, 20), p.cursor(key), p.text(key));
    }

    #[test]
    fn numbers_in_range_are_taken_and_others_refused(n in any::<i64>(), junk in "[a-z.+-]{1,5}") {
        let p = Params::parse(Some(&format!("limit={n}")), &KNOWN).unwrap();
        match p.int("limit", 1, 100, 20) {
            Ok(v) => prop_assert_eq!(i64::from(v), n),
            Err(e) => { prop_assert!(!(1..=100).contains(&n)); refusal_names(&e, "limit") }
        }
        let p = Params::parse(Some(&format!("limit={n}{junk}")), &KNOWN).unwrap();
        let joined = format!("{n}{junk}");
        let r = p.int("limit", 1, 100, 20);
        prop_assert!(r.is_err() || joined.parse::<u32>().is_ok(), "{} was taken as a number", joined);
    }

    #[test]
    fn texts_round_trip_and_cursors_stay_hex(text in "[^\\p{Cc}]{1,60}", cursor in "[0-9a-f-]{1,64}", operator in "[$\\[\\]{}:\"a-z]{1,20}") {
        let q = format!("location={}&after={}", encode(&text), encode(&cursor));
        let p = Params::parse(Some(&q), &KNOWN).unwrap();
        match p.text("location") {
            Ok(got) => prop_assert_eq!(got.as_deref(), Some(text.trim())),
            Err(e) => { prop_assert!(text.trim().is_empty()); refusal_names(&e, "location") }
        }
        prop_assert_eq!(p.cursor("after").unwrap(), Some(cursor));
        // Anything else in a cursor (an operator, a document) is refused.
        if operator.bytes().any(|b| !(b.is_ascii_hexdigit() || b == b'-')) {
            let p = Params::parse(Some(&format!("after={}", encode(&operator))), &KNOWN).unwrap();
            refusal_names(&p.cursor("after").unwrap_err(), "after");
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused_by_name(key in "[a-z_]{1,10}", v in "[a-z0-9]{0,5}") {
        let r = Params::parse(Some(&format!("{key}={v}")), &KNOWN);
        if KNOWN.contains(&key.as_str()) {
            prop_assert!(r.is_ok());
            let e = Params::parse(Some(&format!("{key}={v}&{key}={v}")), &KNOWN).err().unwrap();
            refusal_names(&e, &key);
        } else {
            refusal_names(&r.err().unwrap(), &key);
        }
    }
}
