//! Caps how many events one call may carry, counted on the wire before any
//! of them is decoded. An empty `CloudEvent` costs 2 bytes, so one 4 MiB
//! message can hold two million of them; decoded, each costs a few hundred
//! bytes plus a result, which is how one call once took 858 MiB. The request
//! body passes through [`CappedBody`], which reads each gRPC message whole
//! (at most the decoding limit), counts its `events` fields without decoding
//! them, and ends the call with `RESOURCE_EXHAUSTED` once a `Write` call or a
//! whole `WriteStream` passes the cap.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use prost::encoding::{WireType, decode_key, decode_varint};

/// The `events` field of `WriteRequest` (see `proto/case_writer.proto`).
const EVENTS_FIELD: u32 = 1;
/// gRPC's message prefix: a compression flag and a 4-byte length.
const PREFIX: usize = 5;

/// How many `events` one encoded `WriteRequest` holds, read from the field
/// keys alone. `None` when the bytes are not a well-formed message: the
/// decoder then refuses them with its own error.
pub fn count_events(mut msg: &[u8]) -> Option<usize> {
    let mut n = 0;
    while msg.has_remaining() {
        let (field, wire) = decode_key(&mut msg).ok()?;
        let skip = match wire {
            WireType::Varint => {
                decode_varint(&mut msg).ok()?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => usize::try_from(decode_varint(&mut msg).ok()?).ok()?,
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        if skip > msg.len() {
            return None;
        }
        msg.advance(skip);
        if field == EVENTS_FIELD && wire == WireType::LengthDelimited {
            n += 1;
        }
    }
    Some(n)
}

/// A gRPC request body that refuses a call once its messages carry more
/// than `max_events` events in all.
pub struct CappedBody {
    inner: Body,
    buf: BytesMut,
    max_events: usize,
    max_message: usize,
    seen: usize,
    /// A message too large to buffer: the rest goes through untouched, and
    /// tonic refuses it by its length prefix.
    pass_through: bool,
}

impl CappedBody {
    pub fn new(inner: Body, max_events: usize, max_message: usize) -> CappedBody {
        CappedBody {
            inner,
            buf: BytesMut::new(),
            max_events,
            max_message,
            seen: 0,
            pass_through: false,
        }
    }

    /// The next whole message in the buffer, counted; an error past the cap.
    fn next_message(&mut self) -> Result<Option<Bytes>, tonic::Status> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max_message {
            self.pass_through = true;
            return Ok(Some(self.buf.split().freeze()));
        }
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        let msg = self.buf.split_to(PREFIX + len).freeze();
        // A compressed message (flag 1) is refused by tonic: this server
        // enables no compression.
        if msg[0] == 0 {
            self.seen += count_events(&msg[PREFIX..]).unwrap_or(0);
        }
        if self.seen > self.max_events {
            return Err(tonic::Status::resource_exhausted(format!(
                "this call carries more than {} events (WRITE_MAX_EVENTS): split them into \
                 Write calls or streams of at most that many; events of earlier messages of a \
                 stream may be stored, and sending them again is safe (ids are idempotent)",
                self.max_events
            )));
        }
        Ok(Some(msg))
    }
}

impl HttpBody for CappedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.pass_through && !this.buf.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
            }
            if !this.pass_through {
                match this.next_message() {
                    Ok(Some(msg)) => return Poll::Ready(Some(Ok(Frame::data(msg)))),
                    Ok(None) => {}
                    Err(status) => return Poll::Ready(Some(Err(Box::new(status)))),
                }
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if this.pass_through => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(data) => this.buf.extend_from_slice(&data),
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                // A truncated last message goes on as it is: tonic reports it.
                None if !this.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                }
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buf.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::count_events;
    use events::proto::{ce, writer::WriteRequest};
    use prost::Message;

    #[test]
    fn counts_the_events_of_an_encoded_request_without_decoding_it() {
        let req = WriteRequest {
            events: vec![
                ce::CloudEvent::default(),
                ce::CloudEvent {
                    id: "a".into(),
                    ..Default::default()
                },
            ],
        };
        assert_eq!(count_events(&req.encode_to_vec()), Some(2));
        assert_eq!(count_events(&[0x0A, 0x00].repeat(1000)), Some(1000));
        assert_eq!(count_events(&[0x0A, 0x05, 0x00]), None, "a truncated field");
    }
}
