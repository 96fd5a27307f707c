//! The protobuf side: code generated from `proto/` and conversion between
//! the SDK's `Event` and the CloudEvents protobuf format.

use chrono::{DateTime, Utc};
use cloudevents::event::{AttributesReader, Data, ExtensionValue};
use cloudevents::{Event, EventBuilder, EventBuilderV10};

use crate::event::EventError;

/// Generated code, nested as the proto packages are so cross-package paths resolve.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod io {
        pub mod cloudevents {
            pub mod v1 {
                tonic::include_proto!("io.cloudevents.v1");
            }
        }
    }
    pub mod covidrealtime {
        pub mod writer {
            pub mod v1 {
                tonic::include_proto!("covidrealtime.writer.v1");
            }
        }
    }
}

pub use pb::covidrealtime::writer::v1 as writer;
pub use pb::io::cloudevents::v1 as ce;

use ce::cloud_event::Data as PbData;
use ce::cloud_event_attribute_value::Attr;

fn attr(a: Attr) -> ce::CloudEventAttributeValue {
    ce::CloudEventAttributeValue { attr: Some(a) }
}

/// Encodes an event in the CloudEvents protobuf format.
pub fn to_proto(event: &Event) -> ce::CloudEvent {
    let mut attributes = std::collections::HashMap::new();
    if let Some(t) = event.datacontenttype() {
        attributes.insert(
            "datacontenttype".to_owned(),
            attr(Attr::CeString(t.to_owned())),
        );
    }
    if let Some(s) = event.subject() {
        attributes.insert("subject".to_owned(), attr(Attr::CeString(s.to_owned())));
    }
    if let Some(u) = event.dataschema() {
        attributes.insert("dataschema".to_owned(), attr(Attr::CeUri(u.to_string())));
    }
    if let Some(t) = event.time() {
        let ts = prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        };
        attributes.insert("time".to_owned(), attr(Attr::CeTimestamp(ts)));
    }
    for (name, value) in event.iter_extensions() {
        let a = match value {
            ExtensionValue::String(s) => Attr::CeString(s.clone()),
            ExtensionValue::Boolean(b) => Attr::CeBoolean(*b),
            ExtensionValue::Integer(i) => match i32::try_from(*i) {
                Ok(i) => Attr::CeInteger(i),
                Err(_) => Attr::CeString(i.to_string()),
            },
        };
        attributes.insert(name.to_owned(), attr(a));
    }
    let data = event.data().map(|d| match d {
        Data::Binary(b) => PbData::BinaryData(b.clone()),
        Data::String(s) => PbData::TextData(s.clone()),
        Data::Json(v) => PbData::TextData(v.to_string()),
    });
    ce::CloudEvent {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        spec_version: event.specversion().to_string(),
        r#type: event.ty().to_owned(),
        attributes,
        data,
    }
}

fn attr_kind(a: &Attr) -> &'static str {
    match a {
        Attr::CeBoolean(_) => "boolean",
        Attr::CeInteger(_) => "integer",
        Attr::CeString(_) => "string",
        Attr::CeBytes(_) => "bytes",
        Attr::CeUri(_) => "URI",
        Attr::CeUriRef(_) => "URI reference",
        Attr::CeTimestamp(_) => "timestamp",
    }
}

/// Decodes the CloudEvents protobuf format; refuses anything but spec 1.0.
pub fn from_proto(pe: ce::CloudEvent) -> Result<Event, EventError> {
    if pe.spec_version != "1.0" {
        return Err(EventError(format!(
            "unsupported CloudEvents spec_version {:?}: expected \"1.0\"",
            pe.spec_version
        )));
    }
    for (name, value) in [("id", &pe.id), ("source", &pe.source), ("type", &pe.r#type)] {
        if value.is_empty() {
            return Err(EventError(format!("the CloudEvent has no {name}")));
        }
    }
    let mut b = EventBuilderV10::new()
        .id(pe.id.clone())
        .source(pe.source)
        .ty(pe.r#type);
    let mut content_type = None;
    for (name, value) in pe.attributes {
        let Some(a) = value.attr else { continue };
        b = with_attribute(b, &mut content_type, &name, a)?;
    }
    let mut event = b
        .build()
        .map_err(|e| EventError(format!("invalid CloudEvent {}: {e}", pe.id)))?;
    crate::event::check_received(&event)?;
    set_data(&mut event, pe.data, content_type)?;
    Ok(event)
}

/// One protobuf attribute on the event being built: a core attribute of its
/// own type (`datacontenttype` is kept aside for the data), or an extension.
fn with_attribute(
    b: EventBuilderV10,
    content_type: &mut Option<String>,
    name: &str,
    a: Attr,
) -> Result<EventBuilderV10, EventError> {
    Ok(match (name, a) {
        ("datacontenttype", Attr::CeString(s)) => {
            *content_type = Some(s);
            b
        }
        ("subject", Attr::CeString(s)) => b.subject(s),
        ("time", Attr::CeTimestamp(ts)) => {
            let t: DateTime<Utc> = DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
                .ok_or_else(|| EventError("the CloudEvent time is out of range".into()))?;
            b.time(t)
        }
        ("dataschema", Attr::CeUri(u)) => {
            let u = url::Url::parse(&u)
                .map_err(|e| EventError(format!("invalid dataschema {u:?}: {e}")))?;
            b.data_with_schema(
                content_type.clone().unwrap_or_default(),
                u,
                Vec::<u8>::new(),
            )
        }
        // A core attribute with the wrong type would become an extension
        // of the same name that no other encoding can carry (found by fuzzing).
        (
            "datacontenttype" | "subject" | "time" | "dataschema" | "id" | "source" | "specversion"
            | "type" | "data" | "data_base64",
            other,
        ) => {
            return Err(EventError(format!(
                "CloudEvent attribute {name:?} has the wrong type ({}) or is not an attribute in the protobuf format",
                attr_kind(&other)
            )));
        }
        (_, Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s)) => b.extension(name, s),
        (_, Attr::CeBoolean(v)) => b.extension(name, v),
        (_, Attr::CeInteger(v)) => b.extension(name, i64::from(v)),
        (_, other) => {
            return Err(EventError(format!(
                "unsupported type for CloudEvent attribute {name:?}: {other:?}"
            )));
        }
    })
}

/// The protobuf data on the event, with its content type (or the format's
/// default for bytes and text).
fn set_data(
    event: &mut Event,
    data: Option<PbData>,
    content_type: Option<String>,
) -> Result<(), EventError> {
    match data {
        Some(PbData::BinaryData(bytes)) => {
            event.set_data(
                content_type.unwrap_or_else(|| "application/octet-stream".into()),
                bytes,
            );
        }
        Some(PbData::TextData(text)) => {
            let ct = content_type.unwrap_or_else(|| "text/plain".into());
            event.set_data(ct, Data::String(text));
        }
        Some(PbData::ProtoData(_)) => {
            return Err(EventError(
                "protobuf Any data is not used by this pipeline".into(),
            ));
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Case, Reported};

    #[test]
    fn proto_round_trips() {
        let r = Reported {
            id: Reported::new_id(),
            case: Case::new("Ana", "Peten", 40, "imported", "active").unwrap(),
            time: Utc::now(),
            revision: Some("ingest-00002".into()),
            traceparent: None,
        };
        let back = from_proto(to_proto(&r.to_event("/ingest"))).unwrap();
        let back = Reported::from_event(&back).unwrap();
        assert_eq!(back.case, r.case);
        assert_eq!(back.revision, r.revision);
        assert_eq!(back.time.timestamp_millis(), r.time.timestamp_millis());
    }

    #[test]
    fn wrong_spec_version_is_refused() {
        let mut pe = to_proto(
            &Reported {
                id: "x".into(),
                case: Case::new("Ana", "Peten", 40, "imported", "active").unwrap(),
                time: Utc::now(),
                revision: None,
                traceparent: None,
            }
            .to_event("/ingest"),
        );
        pe.spec_version = "0.3".into();
        assert!(
            from_proto(pe.clone())
                .unwrap_err()
                .0
                .contains("spec_version")
        );
        pe.spec_version = "1.0".into();
        pe.id.clear();
        assert!(from_proto(pe).unwrap_err().0.contains("no id"));
    }
}
