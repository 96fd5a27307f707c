//! Load generator speed: `loadtest` (one thread) vs Locust (FastHttpUser,
//! one process) vs `wrk` (one thread), against the same trivial nginx
//! endpoint, in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::report::{int, table};
use crate::stats::median;
use crate::{Ctx, procs};

const BODY: &str =
    r#"{"name":"Ana","location":"Petén","age":34,"infectedtype":"communitary","state":"active"}"#;

/// nginx answering every request with a fixed 202, one worker, no logs.
fn start_nginx(dir: &Path, port: u16) -> anyhow::Result<procs::Proc> {
    std::fs::create_dir_all(dir.join("logs"))?;
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  server {{\n    listen 127.0.0.1:{port};\n    keepalive_requests 1000000;\n    location / {{ default_type application/json; return 202 '{{\"accepted\":1,\"ids\":[\"x\"]}}'; }}\n  }}\n}}\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let nginx = which("nginx").context("nginx is not installed: run scripts/setup.sh")?;
    let child = Command::new(nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(procs::Proc(child))
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    for d in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(d).join(cmd);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

/// Locust, from the virtualenv scripts/setup.sh makes.
fn locust() -> anyhow::Result<std::path::PathBuf> {
    let bin = stack::servers::tools_dir().join("locust-venv/bin/locust");
    if !bin.exists() {
        bail!(
            "Locust is not installed at {}: run scripts/setup.sh",
            bin.display()
        );
    }
    Ok(bin)
}

fn wrk_rps(url: &str, secs: u64, dir: &Path) -> anyhow::Result<f64> {
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    let wrk = which("wrk").context("wrk is not installed: run scripts/setup.sh")?;
    let out = Command::new(wrk)
        .args(["-t1", "-c50", &format!("-d{secs}s"), "-s"])
        .arg(&script)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    crate::loadgen::wrk_requests_per_sec(&text)
}

fn locust_rps(bin: &Path, url: &str, secs: u64, dir: &Path) -> anyhow::Result<f64> {
    let prefix = dir.join("locust");
    let status = Command::new(bin)
        .args([
            "-f",
            "loadtest/traffic.py",
            "--headless",
            "-u",
            "50",
            "-r",
            "50",
            "-t",
            &format!("{secs}s"),
            "--host",
            url,
            "--only-summary",
            "--csv",
        ])
        .arg(&prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let csv = std::fs::read_to_string(format!("{}_stats.csv", prefix.display()))
        .with_context(|| format!("Locust wrote no stats ({status})"))?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty Locust stats")?
        .split(',')
        .collect();
    let col = header
        .iter()
        .position(|h| *h == "Requests/s")
        .context("no Requests/s column")?;
    let agg = lines
        .find(|l| l.contains("Aggregated"))
        .context("no Aggregated row")?;
    Ok(agg.split(',').nth(col).context("short row")?.parse()?)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    println!("== load generator speed");
    let dir = ctx.work.path().join("generator");
    std::fs::create_dir_all(&dir)?;
    let port = stack::free_port()?;
    let _nginx = start_nginx(&dir.join("nginx"), port)?;
    let url = format!("http://127.0.0.1:{port}");
    procs::wait_http_ok(
        &reqwest::Client::new(),
        &format!("{url}/"),
        Duration::from_secs(10),
    )
    .await
    .ok();
    let locust_bin = locust()?;
    let lt_args: Vec<String> = [
        "--users",
        "50",
        "--duration",
        &format!("{}s", ctx.secs),
        "--target",
        &format!("nginx={url}"),
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut lt, mut lc, mut wk) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ctx.runs {
        println!("  run {}/{}", i + 1, ctx.runs);
        lt.push(ctx.loadtest.run(&lt_args)?.total.requests_per_s);
        lc.push(locust_rps(&locust_bin, &url, ctx.secs, &dir)?);
        wk.push(wrk_rps(&format!("{url}/cases"), ctx.secs, &dir)?);
    }
    let (lt, lc, wk) = (median(&lt), median(&lc), median(&wk));
    let ratio = lt / lc.max(1.0);
    let rows = vec![
        vec![
            "loadtest (this project, 1 thread, 50 users)".into(),
            int(lt),
            format!("`{}`", crate::loadgen::Loadtest::command(&lt_args)),
        ],
        vec![
            "Locust (FastHttpUser, 1 process, 50 users)".into(),
            int(lc),
            format!(
                "`locust -f loadtest/traffic.py --headless -u 50 -r 50 -t {}s --host {url}`",
                ctx.secs
            ),
        ],
        vec![
            "wrk (1 thread, 50 connections)".into(),
            int(wk),
            format!("`wrk -t1 -c50 -d{}s -s post.lua {url}/cases`", ctx.secs),
        ],
    ];
    let md = format!(
        "Requests/s each generator sends to the same nginx endpoint (one worker, fixed 202 answer) on this machine, same run; medians of {} runs of {} s.\n\n{}\n**loadtest / Locust = {ratio:.1}×** (target: at least 10×). loadtest / wrk = {:.2}.\n",
        ctx.runs,
        ctx.secs,
        table(&["generator", "requests/s", "command"], &rows),
        lt / wk.max(1.0)
    );
    println!("{md}");
    crate::report::write_json(
        &ctx.results,
        "generator",
        &json!({"machine": ctx.machine, "runs": ctx.runs, "secs": ctx.secs, "loadtest_rps": lt, "locust_rps": lc, "wrk_rps": wk, "loadtest_over_locust": ratio}),
    )?;
    crate::report::update_markdown(&ctx.markdown, "generator", &md)
}
