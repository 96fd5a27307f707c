//! One call cannot make grpc-writer decode, answer or hold more than
//! `WRITE_MAX_EVENTS` events: grpc-writer runs as its own process (its peak
//! resident memory is its own) against the real MongoDB-compatible server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use events::proto::ce;
use events::proto::writer::WriteRequest;
use events::proto::writer::case_writer_client::CaseWriterClient;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const MAX_EVENTS: usize = 10_000;

/// grpc-writer as a child process; killed when dropped.
struct WriterProcess {
    child: Child,
    url: String,
}

impl Drop for WriterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WriterProcess {
    async fn start() -> WriterProcess {
        let s = stack::testing::servers();
        let port = stack::free_port().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_grpc-writer"))
            .env_clear()
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("MONGODB_URI", &s.mongodb_uri)
            .env("MONGODB_DATABASE", stack::testing::unique("event_cap"))
            .env("WRITE_MAX_EVENTS", MAX_EVENTS.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = stack::testing::http_client();
        let start = Instant::now();
        while http.get(format!("{url}/healthz")).send().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "grpc-writer did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        WriterProcess { child, url }
    }

    /// `VmHWM`: the most memory the process has held resident, in MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib / 1024
    }
}

/// Sends a message's bytes exactly as given, so the test can build a
/// request no typed client would hold in memory cheaply.
#[derive(Clone, Default)]
struct RawCodec;
struct Raw;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[tokio::test]
async fn a_write_of_two_million_empty_events_is_refused_before_they_are_decoded() {
    let w = WriterProcess::start().await;
    // Field 1 (`events`), length 0: an empty CloudEvent in 2 bytes.
    let message = [0x0Au8, 0x00].repeat(2_000_000);
    assert_eq!(message.len(), 4_000_000);
    let channel = tonic::transport::Endpoint::from_shared(w.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = "/covidrealtime.writer.v1.CaseWriter/Write".parse().unwrap();
    let answer = grpc
        .unary(tonic::Request::new(message), path, RawCodec)
        .await;
    let peak = w.peak_rss_mib();
    eprintln!("grpc-writer peak resident memory: {peak} MiB");
    let status = refused(answer.map(|r| r.into_inner().len()), "response bytes");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("WRITE_MAX_EVENTS"),
        "the status names the cap: {status:?}"
    );
    assert!(
        peak < 128,
        "grpc-writer held {peak} MiB for one refused call"
    );
}

/// The call's status; a call that was answered instead fails the test
/// with the size of the answer (not the answer itself).
fn refused(answer: Result<usize, tonic::Status>, what: &str) -> tonic::Status {
    match answer {
        Ok(n) => panic!("the call was answered ({n} {what}) instead of refused"),
        Err(status) => status,
    }
}

fn empty_events(n: usize) -> WriteRequest {
    WriteRequest {
        events: vec![ce::CloudEvent::default(); n],
    }
}

#[tokio::test]
async fn a_stream_is_refused_once_its_messages_together_pass_the_event_cap() {
    let w = WriterProcess::start().await;
    let mut client = CaseWriterClient::connect(w.url.clone()).await.unwrap();
    // Up to the cap, a call is answered: one (rejected) result per event.
    let at_cap = client.write(empty_events(MAX_EVENTS)).await.unwrap();
    assert_eq!(at_cap.into_inner().results.len(), MAX_EVENTS);
    // Each message is under the cap; the stream as a whole is not.
    let batches = (0..3).map(|_| empty_events(MAX_EVENTS / 2));
    let answer = client.write_stream(tokio_stream::iter(batches)).await;
    let status = refused(answer.map(|r| r.into_inner().results.len()), "results");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("WRITE_MAX_EVENTS"), "{status:?}");
}
