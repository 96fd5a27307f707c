//! The `Case` record: one reported COVID-19 case, with the fields of
//! `traffic.json`. A `Case` value is valid by construction: every way to get
//! one (deserializing or [`Case::new`]) runs the same checks.

use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Longest accepted text field, in characters, after trimming.
pub const MAX_TEXT_CHARS: usize = 200;
/// Oldest accepted age, in years.
pub const MAX_AGE: u8 = 130;

/// One reported case. Unknown fields and wrong types are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: Text,
    pub location: Text,
    pub age: Age,
    pub infectedtype: Text,
    pub state: Text,
}

impl Case {
    /// Builds a case from plain values, with the same checks as parsing.
    pub fn new(
        name: &str,
        location: &str,
        age: i64,
        infectedtype: &str,
        state: &str,
    ) -> Result<Case, CaseError> {
        let text = |field: &'static str, v: &str| {
            Text::parse(v).map_err(|m| CaseError::new(m).with_field(field))
        };
        Ok(Case {
            name: text("name", name)?,
            location: text("location", location)?,
            age: Age::parse(age).map_err(|m| CaseError::new(m).with_field("age"))?,
            infectedtype: text("infectedtype", infectedtype)?,
            state: text("state", state)?,
        })
    }

    /// Age bucket index: 0 for 0-9, 1 for 10-19, ..., 9 for 90 and over.
    pub fn age_bucket(&self) -> usize {
        usize::from(self.age.0 / 10).min(AGE_BUCKETS.len() - 1)
    }
}

/// A `case.reported.v1` case as the project's own functions read it from one
/// another: the same typed, checked fields as [`Case`], but fields this build
/// does not know are ignored rather than refused. Within a version, fields are
/// only ever added (and optional), so during a canary an older writer stores
/// every case a newer ingest sends; the public edge keeps refusing unknown
/// fields ([`parse_case`]). A change an older reader must not ignore gets a
/// new event type (`...case.reported.v2`) instead.
#[derive(Deserialize)]
pub(crate) struct InternalCase {
    name: Text,
    location: Text,
    age: Age,
    infectedtype: Text,
    state: Text,
}

impl From<InternalCase> for Case {
    fn from(c: InternalCase) -> Case {
        Case {
            name: c.name,
            location: c.location,
            age: c.age,
            infectedtype: c.infectedtype,
            state: c.state,
        }
    }
}

/// Labels of the age buckets, in order (see [`Case::age_bucket`]).
pub const AGE_BUCKETS: [&str; 10] = [
    "0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+",
];

/// A trimmed, non-empty text of at most [`MAX_TEXT_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    pub fn parse(raw: &str) -> Result<Text, String> {
        let t = raw.trim();
        if t.is_empty() {
            return Err("must not be empty".into());
        }
        if t.chars().count() > MAX_TEXT_CHARS {
            return Err(format!("must be at most {MAX_TEXT_CHARS} characters"));
        }
        if t.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Text(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-empty string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Text::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Age in whole years, 0 to [`MAX_AGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Age(u8);

impl Age {
    pub fn parse(years: i64) -> Result<Age, String> {
        if (0..=i64::from(MAX_AGE)).contains(&years) {
            Ok(Age(years as u8))
        } else {
            Err(format!(
                "must be a whole number from 0 to {MAX_AGE}, got {years}"
            ))
        }
    }

    pub fn years(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Age;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number from 0 to {MAX_AGE}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Age, E> {
                Age::parse(i64::try_from(v).unwrap_or(i64::MAX)).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Age, E> {
                Age::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Age, E> {
                Err(E::custom(format!(
                    "must be a whole number from 0 to {MAX_AGE}, got {v}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a body or a case was refused, with the field and batch index to point at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct CaseError {
    #[serde(rename = "error")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Where malformed JSON stops parsing (1-based), instead of a field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl CaseError {
    pub fn new(message: impl Into<String>) -> Self {
        CaseError {
            message: message.into(),
            field: None,
            index: None,
            line: None,
            column: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_index(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    /// Turns a serde error at a tracked path into a message naming the field
    /// (and the array index for a batch).
    fn from_path(
        err: serde_path_to_error::Error<serde_json::Error>,
        batch_index: Option<usize>,
    ) -> Self {
        let mut index = batch_index;
        let mut field = None;
        for seg in err.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index: i } => index = Some(*i),
                serde_path_to_error::Segment::Map { key } => field = Some(key.clone()),
                _ => {}
            }
        }
        let inner = err.into_inner();
        if matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        ) {
            // Not valid JSON: no field is to blame (serde's message quotes
            // the expected token, "`,` or `}`"), the position is.
            let raw = inner.to_string();
            let what = raw.rfind(" at line ").map_or(raw.as_str(), |i| &raw[..i]);
            return CaseError {
                message: format!(
                    "malformed JSON at line {} column {}: {what}",
                    inner.line(),
                    inner.column()
                ),
                field: None,
                index: batch_index,
                line: Some(inner.line()),
                column: Some(inner.column()),
            };
        }
        let raw = inner.to_string();
        // serde names missing and unknown fields only inside its message.
        if field.is_none() {
            field = backticked(&raw);
        }
        // Drop serde_json's " at line 1 column 42" suffix: the field says where.
        let message = match raw.rfind(" at line ") {
            Some(i) if inner.line() > 0 => raw[..i].to_owned(),
            _ => raw,
        };
        let message = match &field {
            Some(f) if !message.contains(&format!("`{f}`")) => format!("{f}: {message}"),
            _ => message,
        };
        CaseError {
            message,
            field,
            index,
            line: None,
            column: None,
        }
    }
}

fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned())
}

impl std::str::FromStr for Case {
    type Err = CaseError;
    fn from_str(s: &str) -> Result<Case, CaseError> {
        parse_case(s.as_bytes())
    }
}

/// Parses exactly one case object.
pub fn parse_case(body: &[u8]) -> Result<Case, CaseError> {
    deserialize(body, None)
}

/// Deserializes `body`; only a body that fails is parsed a second time with
/// path tracking, to name the field (valid bodies, the common case, pay
/// nothing for it).
fn deserialize<T: serde::de::DeserializeOwned>(
    body: &[u8],
    index: Option<usize>,
) -> Result<T, CaseError> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| CaseError::from_path(e, index))
}

/// Parses a JSON body: one case object, or an array of them (a batch).
/// A batch is all-or-nothing: the first bad case refuses the whole body.
pub fn parse_json_body(body: &[u8]) -> Result<Vec<Case>, CaseError> {
    // Find the shape first so errors inside a case point at its fields.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let cases: Vec<Case> = deserialize(body, None)?;
            if cases.is_empty() {
                return Err(CaseError::new("the batch is empty: send at least one case"));
            }
            Ok(cases)
        }
        Some(b'{') => Ok(vec![parse_case(body)?]),
        None => Err(CaseError::new(
            "the body is empty: send a case object, an array of cases, or NDJSON",
        )),
        Some(_) => Err(CaseError::new(
            "the body must be a JSON case object or an array of case objects",
        )),
    }
}

/// Parses NDJSON: one case object a line; blank lines are skipped.
pub fn parse_ndjson_body(body: &[u8]) -> Result<Vec<Case>, CaseError> {
    let mut cases = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let index = cases.len();
        let case = deserialize(line, Some(index))?;
        cases.push(case);
    }
    if cases.is_empty() {
        return Err(CaseError::new(
            "the body has no cases: send one JSON case object a line",
        ));
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"name":" Ana ","location":"Guatemala","age":34,"infectedtype":"community","state":"active"}"#;

    #[test]
    fn parses_and_trims() {
        let c = parse_case(GOOD.as_bytes()).unwrap();
        assert_eq!(c.name.as_str(), "Ana");
        assert_eq!(c.age.years(), 34);
        assert_eq!(c.age_bucket(), 3);
    }

    #[test]
    fn names_the_bad_field() {
        let cases = [
            (
                r#"{"name":"A","location":{"$gt":""},"age":3,"infectedtype":"x","state":"y"}"#,
                "location",
            ),
            (
                r#"{"name":"A","location":"L","age":-1,"infectedtype":"x","state":"y"}"#,
                "age",
            ),
            (
                r#"{"name":"A","location":"L","age":131,"infectedtype":"x","state":"y"}"#,
                "age",
            ),
            (
                r#"{"name":"A","location":"L","age":3.5,"infectedtype":"x","state":"y"}"#,
                "age",
            ),
            (
                r#"{"name":"A","location":"L","age":"3","infectedtype":"x","state":"y"}"#,
                "age",
            ),
            (
                r#"{"name":"  ","location":"L","age":3,"infectedtype":"x","state":"y"}"#,
                "name",
            ),
            (
                r#"{"name":"A","location":"L","age":3,"infectedtype":"x"}"#,
                "state",
            ),
            (
                r#"{"name":"A","location":"L","age":3,"infectedtype":"x","state":"y","extra":1}"#,
                "extra",
            ),
        ];
        for (body, field) in cases {
            let e = parse_case(body.as_bytes()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{body}: {e:?}");
            assert!(e.message.contains(field), "{body}: {}", e.message);
        }
    }

    #[test]
    fn long_text_is_refused() {
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        let e = Case::new(&long, "L", 1, "x", "y").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        assert!(Case::new(&"x".repeat(MAX_TEXT_CHARS), "L", 1, "x", "y").is_ok());
    }

    #[test]
    fn batch_error_names_index() {
        let body = format!(
            r#"[{GOOD},{GOOD},{{"name":"A","location":"L","age":400,"infectedtype":"x","state":"y"}}]"#
        );
        let e = parse_json_body(body.as_bytes()).unwrap_err();
        assert_eq!(e.index, Some(2));
        assert_eq!(e.field.as_deref(), Some("age"));
        assert_eq!(
            parse_json_body(format!("[{GOOD},{GOOD}]").as_bytes())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn ndjson_error_names_line_index() {
        let body = format!("{GOOD}\n\n{GOOD}\r\n{{\"name\":1}}\n");
        let e = parse_ndjson_body(body.as_bytes()).unwrap_err();
        assert_eq!(e.index, Some(2));
        assert_eq!(e.field.as_deref(), Some("name"));
        assert_eq!(
            parse_ndjson_body(format!("{GOOD}\n{GOOD}\n").as_bytes())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for body in ["", "42", "\"x\"", "[]", "null", "{", "[1]"] {
            assert!(parse_json_body(body.as_bytes()).is_err(), "{body}");
        }
        assert!(parse_json_body(b"[1]").unwrap_err().index == Some(0));
    }
}
