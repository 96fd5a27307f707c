//! eventing-redis' RedisStreamSource receive adapter, step for step as its
//! code does it (knative-extensions/eventing-redis, `pkg/source/adapter/
//! adapter.go` at 9d56309, with the CloudEvents Go SDK v2's HTTP binding and
//! Knative's adapter client vendored there), so redis-sub is tested against
//! what the adapter really sends and really does with the answer:
//!
//! - `Start`: reuse the group if it exists, else `XGROUP CREATE <stream>
//!   <group> $` (new entries only).
//! - `processEntry`: `XREADGROUP ... COUNT 1 ... STREAMS <stream> <id>` (`0`
//!   first, for its own pending entries, then `>`), send the event, then
//!   `XACK` whatever the answer was ("Failed to send cloudevent" is only logged).
//! - shutdown: finish its pending entries, `XGROUP DELCONSUMER`, then
//!   `XGROUP DESTROY`.
//! - the event (`toEvent`): type `dev.knative.sources.redisstream`, source
//!   `<address>/<stream>`, id the entry id, `application/json` data the
//!   entry's field/value pairs as `[]string` through Go's `json.Marshal`;
//!   the client adds `time` (`WithTimeNow`) and a `Kn-Namespace` header, its
//!   OpenTelemetry transport a `Traceparent`. Binary mode: `Ce-*` headers
//!   named by `textproto.CanonicalMIMEHeaderKey`, `datacontenttype` as
//!   `Content-Type`. No `subject`.

use redis::aio::ConnectionManager;

pub const GROUP: &str = "redis-stream-source";

pub struct StreamSource {
    pub conn: ConnectionManager,
    /// `spec.address` of the RedisStreamSource.
    pub address: String,
    pub stream: String,
    /// The sink: redis-sub's URL.
    pub sink: String,
    http: reqwest::Client,
}

/// What one `processEntry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing to read.
    Idle,
    /// Sent; the sink answered this status (the entry was XACKed anyway).
    Answered(u16),
    /// The sink could not be reached (the entry was XACKed anyway).
    Unreachable,
}

impl StreamSource {
    /// `Start`: the group is reused, or created at `$`.
    pub async fn start(
        mut conn: ConnectionManager,
        address: &str,
        stream: &str,
        sink: &str,
    ) -> StreamSource {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            assert_eq!(e.code(), Some("BUSYGROUP"), "{e}");
        }
        StreamSource {
            conn,
            address: address.trim_end_matches('/').to_owned(),
            stream: stream.to_owned(),
            sink: sink.to_owned(),
            // Go's net/http writes canonical (title-case) header names.
            http: reqwest::Client::builder()
                .http1_title_case_headers()
                .build()
                .unwrap(),
        }
    }

    /// One `processEntry` with read id `id` (`0` or `>`).
    pub async fn process_entry(&mut self, id: &str) -> Delivery {
        let reply: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(format!("{GROUP}-0"))
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(id)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        // redigo's ScanXReadReply: [[stream, [[id, [field, value, ...]]]]],
        // every field and value as a (Go, byte) string, in the entry's order.
        let Some((entry_id, flat)) = first_entry(reply) else {
            return Delivery::Idle;
        };
        let sent = self
            .http
            .post(&self.sink)
            .header("Ce-Id", &entry_id)
            .header("Ce-Source", format!("{}/{}", self.address, self.stream))
            .header("Ce-Specversion", "1.0")
            .header(
                "Ce-Time",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )
            .header("Ce-Type", "dev.knative.sources.redisstream")
            .header("Content-Type", "application/json")
            .header("Kn-Namespace", "covid-realtime")
            .header(
                "Traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("User-Agent", "Go-http-client/1.1")
            .header("Accept-Encoding", "gzip")
            .body(go_json_marshal(&flat))
            .send()
            .await;
        let delivery = match sent {
            Ok(resp) => Delivery::Answered(resp.status().as_u16()),
            Err(_) => Delivery::Unreachable,
        };
        // Acknowledged whatever the answer: a refused entry is never retried.
        let _: u64 = redis::cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&entry_id)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        delivery
    }

    /// Delivers until nothing is left to read; returns each delivery.
    pub async fn drain(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut id = "0";
        loop {
            match self.process_entry(id).await {
                Delivery::Idle if id == "0" => id = ">",
                Delivery::Idle => return out,
                d => out.push(d),
            }
        }
    }

    /// Graceful shutdown: pending entries, DELCONSUMER, then DESTROY: the
    /// group, and its place in the stream, are gone.
    pub async fn shut_down(mut self) {
        while self.process_entry("0").await != Delivery::Idle {}
        let _: redis::Value = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(format!("{GROUP}-0"))
            .query_async(&mut self.conn)
            .await
            .unwrap();
        let _: redis::Value = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(&self.stream)
            .arg(GROUP)
            .query_async(&mut self.conn)
            .await
            .unwrap();
    }
}

fn first_entry(reply: redis::Value) -> Option<(String, Vec<Vec<u8>>)> {
    use redis::Value;
    let bytes = |v: &Value| -> Vec<u8> { redis::from_redis_value(v.clone()).unwrap() };
    let Value::Array(streams) = reply else {
        return None;
    };
    let Value::Array(stream) = streams.first()? else {
        panic!("unexpected XREADGROUP reply")
    };
    let Value::Array(items) = &stream[1] else {
        panic!("unexpected XREADGROUP reply")
    };
    let Value::Array(item) = items.first()? else {
        panic!("unexpected XREADGROUP reply")
    };
    let Value::Array(fields) = &item[1] else {
        panic!("a pending entry deleted from the stream: the adapter would stall on it")
    };
    let id = String::from_utf8(bytes(&item[0])).unwrap();
    Some((id, fields.iter().map(bytes).collect()))
}

/// Go's `json.Marshal` of a `[]string` holding these bytes (encoding/json,
/// HTML escaping on, as the SDK's JSON data codec calls it): `<`, `>`, `&`,
/// U+2028 and U+2029 as `\u` escapes; control characters as `\n`, `\r`,
/// `\t`, `\b`, `\f` or `\u00xx`; each byte that does not start a valid
/// UTF-8 sequence as `\ufffd` (`utf8.DecodeRuneInString` answers
/// `(RuneError, 1)`), one byte at a time.
pub fn go_json_marshal<B: AsRef<[u8]>>(values: &[B]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        let mut rest = v.as_ref();
        while !rest.is_empty() {
            let (valid, invalid) = match std::str::from_utf8(rest) {
                Ok(s) => (s, &[][..]),
                Err(e) => {
                    let (valid, invalid) = rest.split_at(e.valid_up_to());
                    (std::str::from_utf8(valid).unwrap(), invalid)
                }
            };
            push_escaped(&mut out, valid);
            if let Some((_, after)) = invalid.split_first() {
                out.push_str("\\ufffd");
                rest = after;
            } else {
                rest = invalid;
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}
