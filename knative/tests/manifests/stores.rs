//! The demo Redis keeps what ingest acknowledged (issue 13, item 5): its
//! StatefulSet's arguments, given to a real redis-server, make an AOF fsynced
//! before every reply and a maxmemory with noeviction well below the
//! container's memory limit.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use knative_manifests::tools;

use crate::common;

/// The Redis container of knative/stores: (args, memory limit in bytes).
fn redis_container() -> (Vec<String>, u64) {
    let stores = common::bundle("stores");
    let sts = stores
        .of_kind("StatefulSet")
        .find(|s| s["metadata"]["name"] == "redis")
        .expect("a StatefulSet redis in knative/stores");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"]
        .as_sequence()
        .expect("redis has args")
        .iter()
        .map(|a| a.as_str().expect("string args").to_owned())
        .collect();
    let limit = c["resources"]["limits"]["memory"]
        .as_str()
        .expect("a memory limit");
    let mib: u64 = limit
        .strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("memory limit {limit:?}: write it in Mi"));
    (args, mib << 20)
}

/// `CONFIG GET name` on a RESP connection.
fn config_get(conn: &mut BufReader<TcpStream>, name: &str) -> String {
    conn.get_mut()
        .write_all(format!("CONFIG GET {name}\r\n").as_bytes())
        .unwrap();
    // *2, $len, name, $len, value
    let mut lines = Vec::new();
    for _ in 0..5 {
        let mut l = String::new();
        conn.read_line(&mut l).unwrap();
        lines.push(l.trim_end().to_owned());
    }
    assert_eq!(lines[0], "*2", "CONFIG GET {name}: {lines:?}");
    lines[4].clone()
}

#[test]
fn redis_fsyncs_before_answering_and_refuses_writes_below_its_limit() {
    let (args, limit) = redis_container();
    let redis = tools::find(&tools::REDIS_SERVER).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(redis)
        .args(&args)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("redis-server refused the manifest's arguments {args:?}: {status}");
        }
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut conn = BufReader::new(stream);
    let got = [
        ("appendonly", config_get(&mut conn, "appendonly")),
        ("appendfsync", config_get(&mut conn, "appendfsync")),
        (
            "maxmemory-policy",
            config_get(&mut conn, "maxmemory-policy"),
        ),
    ];
    let maxmemory: u64 = config_get(&mut conn, "maxmemory").parse().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        got,
        [
            ("appendonly", "yes".to_owned()),
            ("appendfsync", "always".to_owned()),
            ("maxmemory-policy", "noeviction".to_owned()),
        ],
        "knative/stores/redis.yaml"
    );
    // Room above maxmemory for the AOF rewrite's fork, client and AOF buffers.
    assert!(
        maxmemory > 0 && maxmemory * 4 <= limit * 3,
        "maxmemory {maxmemory} must be set and at most 75 % of the memory limit {limit}"
    );
}
