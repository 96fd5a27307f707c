//! The HTTP side: one HTTP/1.1 keep-alive connection per virtual user (as
//! Locust's FastHttpUser), driven with hyper directly. There is no pool to
//! lock and no per-request URL parsing; a measurement against a pooled
//! client is in the README.

use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::stats::TransportError;
use crate::target::Target;

/// Everything a request to one target has in common, built once.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    uri: Uri,
    host: HeaderValue,
    content_type: HeaderValue,
    authorization: Option<HeaderValue>,
}

const AGENT: HeaderValue =
    HeaderValue::from_static(concat!("loadtest/", env!("CARGO_PKG_VERSION")));

impl RequestTemplate {
    pub fn new(
        target: &Target,
        content_type: HeaderValue,
        authorization: Option<HeaderValue>,
    ) -> Self {
        RequestTemplate {
            uri: Uri::from(target.path.clone()),
            host: target.host.clone(),
            content_type,
            authorization,
        }
    }

    pub fn build(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(CONTENT_TYPE, self.content_type.clone());
        h.insert(USER_AGENT, AGENT);
        if let Some(auth) = &self.authorization {
            h.insert(AUTHORIZATION, auth.clone());
        }
        req
    }
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub head: http::response::Parts,
    pub body: Bytes,
}

/// A user's connection to one target, (re)connected on demand.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, sender: None }
    }

    /// Sends `req` and reads the whole response within `timeout` (connecting
    /// first if needed). After any error the connection is dropped: its state
    /// is unknown, and the next request opens a new one.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        let deadline = Instant::now() + timeout;
        let result = self.exchange(req, deadline).await;
        match &result {
            Ok(reply) if !keeps_alive(&reply.head) => self.sender = None,
            Ok(_) => {}
            Err(_) => self.sender = None,
        }
        result
    }

    async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<Reply, TransportError> {
        let sender = self.ready(deadline).await?;
        let exchange = async {
            let res = sender.send_request(req).await.map_err(|e| classify(&e))?;
            let (head, body) = res.into_parts();
            let body = body.collect().await.map_err(|e| classify(&e))?.to_bytes();
            Ok(Reply { head, body })
        };
        timeout_at(deadline, exchange)
            .await
            .map_err(|_| TransportError::Timeout)?
    }

    /// A connection ready for the next request. A kept-alive connection the
    /// server closed meanwhile is replaced once, silently: nothing was sent on it.
    async fn ready(
        &mut self,
        deadline: Instant,
    ) -> Result<&mut SendRequest<Full<Bytes>>, TransportError> {
        if let Some(sender) = &mut self.sender {
            let reusable = !sender.is_closed()
                && timeout_at(deadline, sender.ready())
                    .await
                    .map_err(|_| TransportError::Timeout)?
                    .is_ok();
            if !reusable {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            self.sender = Some(connect(self.addr, deadline).await?);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }
}

async fn connect(
    addr: SocketAddr,
    deadline: Instant,
) -> Result<SendRequest<Full<Bytes>>, TransportError> {
    let stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| TransportError::ConnectTimeout)?
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => TransportError::ConnectRefused,
            io::ErrorKind::TimedOut => TransportError::ConnectTimeout,
            _ => TransportError::Connect,
        })?;
    // Requests are small and latency is what we measure: no Nagle delay.
    stream
        .set_nodelay(true)
        .map_err(|_| TransportError::Connect)?;
    let (sender, conn) = timeout_at(deadline, http1::handshake(TokioIo::new(stream)))
        .await
        .map_err(|_| TransportError::ConnectTimeout)?
        .map_err(|e| classify(&e))?;
    // The connection task ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn keeps_alive(head: &http::response::Parts) -> bool {
    !head
        .headers
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// Names a hyper error by what a person running a load test can act on.
fn classify(e: &hyper::Error) -> TransportError {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    TransportError::ConnectionReset
                }
                io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => {
                    TransportError::ConnectionClosed
                }
                io::ErrorKind::TimedOut => TransportError::Timeout,
                _ => TransportError::Io,
            };
        }
        source = s.source();
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        TransportError::Protocol
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        TransportError::ConnectionClosed
    } else if e.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Io
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn template(addr: SocketAddr) -> RequestTemplate {
        let target = crate::target::resolve(
            &[crate::cli::TargetArg {
                name: "t".into(),
                url: format!("http://{addr}"),
            }],
            &[],
            "/cases",
        )
        .unwrap()
        .remove(0);
        RequestTemplate::new(&target, HeaderValue::from_static("application/json"), None)
    }

    /// A raw server: answers each connection's requests with `reply`, then
    /// does what `after` says.
    async fn raw_server(reply: &'static [u8], requests_per_conn: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    for _ in 0..requests_per_conn {
                        if s.read(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn refused_connection_is_named() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let mut conn = Conn::new(addr);
        let e = conn
            .send(
                template(addr).build(Bytes::from_static(b"{}")),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert_eq!(e, TransportError::ConnectRefused);
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error_and_silence_a_timeout() {
        let addr = raw_server(b"NOT HTTP\r\n\r\n", 1).await;
        let mut conn = Conn::new(addr);
        let e = conn
            .send(template(addr).build(Bytes::new()), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e, TransportError::Protocol);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conn = Conn::new(addr);
        // Accepted by the kernel backlog, never answered.
        let e = conn
            .send(
                template(addr).build(Bytes::new()),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert_eq!(e, TransportError::Timeout);
        drop(listener);
    }

    #[tokio::test]
    async fn server_closing_idle_connections_is_not_an_error() {
        // One request per connection, then the server closes (without saying so).
        let addr = raw_server(
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 14\r\n\r\n{\"accepted\":1}",
            1,
        )
        .await;
        let mut conn = Conn::new(addr);
        let t = template(addr);
        for _ in 0..5 {
            let reply = conn
                .send(t.build(Bytes::from_static(b"{}")), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(reply.head.status, 202);
            assert_eq!(&reply.body[..], b"{\"accepted\":1}");
            // Let the close reach the client before the next request.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
