//! W3C trace context (`traceparent`), carried across every hop: HTTP header,
//! CloudEvent extension, gRPC metadata and Redis payload.

use std::fmt;

use axum::http::HeaderValue;
use rand::Rng;

pub const HEADER: &str = "traceparent";

/// One span's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace (this hop is its root).
    pub fn new_root() -> TraceContext {
        let mut rng = rand::rng();
        TraceContext {
            trace_id: rng.random_range(1..=u128::MAX),
            span_id: rng.random_range(1..=u64::MAX),
            sampled: true,
        }
    }

    /// A child span in the same trace: what this hop is when a caller sent a parent.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: rand::rng().random_range(1..=u64::MAX),
            ..*self
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid.
    pub fn parse(s: &str) -> Option<TraceContext> {
        let mut parts = s.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let lower_hex = |x: &str| {
            x.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if ![version, trace, span, flags].iter().all(|p| lower_hex(p)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|v| *v != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|v| *v != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// This span as the parent of the next hop, or a new root when `parent` is absent or invalid.
    pub fn continue_from(parent: Option<&str>) -> TraceContext {
        parent
            .and_then(TraceContext::parse)
            .map(|p| p.child())
            .unwrap_or_else(TraceContext::new_root)
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl TraceContext {
    /// `00-<trace id>-<span id>-<flags>`, the header's 55 bytes, without
    /// going through `fmt` (this runs on every request).
    pub fn encode(&self) -> [u8; 55] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        for i in 0..32 {
            out[3 + i] = HEX[((self.trace_id >> (124 - 4 * i)) & 0xf) as usize];
        }
        for i in 0..16 {
            out[36 + i] = HEX[((self.span_id >> (60 - 4 * i)) & 0xf) as usize];
        }
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        out
    }

    /// The `traceparent` header value.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.encode()).expect("hex digits and dashes are a valid header")
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.encode();
        f.write_str(std::str::from_utf8(&bytes).expect("ASCII"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let s = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let t = TraceContext::parse(s).unwrap();
        assert_eq!(t.to_string(), s);
        assert_eq!(t.header_value(), s);
        let unsampled = TraceContext {
            sampled: false,
            trace_id: 1,
            span_id: u64::MAX,
        };
        assert_eq!(
            unsampled.to_string(),
            "00-00000000000000000000000000000001-ffffffffffffffff-00"
        );
        let c = TraceContext::continue_from(Some(s));
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
    }

    #[test]
    fn refuses_invalid() {
        for s in [
            "",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ] {
            assert!(TraceContext::parse(s).is_none(), "{s}");
        }
        let root = TraceContext::continue_from(Some("junk"));
        assert!(TraceContext::parse(&root.to_string()).is_some());
    }
}
