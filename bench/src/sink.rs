//! The HTTP sink ingest sends to in the ingest benchmark: HTTP/1.1 with
//! keep-alive and pipelining, parsed with httparse, on its own thread, so the
//! benchmark spends its CPU on ingest rather than on the receiver. It answers
//! `202` to every binary-mode CloudEvent (a POST with `ce-id`, `ce-type`,
//! `ce-source`, `ce-specversion` and a body) and `400` to anything else, and
//! counts both, so the benchmark can check that every accepted case arrived.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const REQUIRED: [&str; 4] = ["ce-id", "ce-type", "ce-source", "ce-specversion"];

#[derive(Default)]
pub struct Counts {
    pub events: AtomicU64,
    pub refused: AtomicU64,
}

pub struct Sink {
    pub url: String,
    pub counts: Arc<Counts>,
}

/// Starts the sink on a free port, on a thread of its own.
pub fn spawn() -> anyhow::Result<Sink> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let url = format!("http://{}/", std_listener.local_addr()?);
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::Builder::new()
        .name("bench-sink".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, c.clone()));
                }
            })
        })?;
    Ok(Sink { url, counts })
}

/// What one parsed request was.
enum Parsed {
    /// Not all of it has arrived yet.
    Partial,
    /// `len` bytes long; whether it was a valid binary-mode CloudEvent.
    Complete {
        len: usize,
        event: bool,
    },
    Invalid,
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let mut length = None;
    let mut present = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if REQUIRED.iter().any(|r| h.name.eq_ignore_ascii_case(r)) && !h.value.is_empty() {
            present += 1;
        }
    }
    let Some(length) = length else {
        return Parsed::Invalid;
    };
    if buf.len() < head + length {
        return Parsed::Partial;
    }
    Parsed::Complete {
        len: head + length,
        event: req.method == Some("POST") && present == REQUIRED.len() && length > 0,
    }
}

async fn connection(mut stream: TcpStream, counts: Arc<Counts>) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut close = false;
        loop {
            match parse(&buf[used..]) {
                Parsed::Partial => break,
                Parsed::Complete { len, event: true } => {
                    counts.events.fetch_add(1, Ordering::Relaxed);
                    out.extend_from_slice(ACCEPTED);
                    used += len;
                }
                Parsed::Complete { event: false, .. } | Parsed::Invalid => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    out.extend_from_slice(BAD);
                    close = true;
                    break;
                }
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_events_and_refuses_the_rest() {
        let event = b"POST / HTTP/1.1\r\nce-id: 1\r\nce-type: t\r\nce-source: /s\r\nce-specversion: 1.0\r\ncontent-length: 2\r\n\r\n{}";
        let mut two = event.to_vec();
        two.extend_from_slice(event);
        match parse(&two) {
            Parsed::Complete { len, event: true } => assert_eq!(len, event.len()),
            _ => panic!("a complete event"),
        }
        assert!(matches!(parse(&event[..event.len() - 1]), Parsed::Partial));
        let plain = b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}";
        assert!(matches!(
            parse(plain),
            Parsed::Complete { event: false, .. }
        ));
        assert!(matches!(parse(b"POST / HTTP/1.1\r\n\r\n"), Parsed::Invalid));
    }
}
