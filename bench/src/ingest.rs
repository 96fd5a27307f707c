//! Ingest alone: requests/s and latency of single-case and 100-case POSTs to
//! an HTTP sink, p99 at half the peak rate, binary size and RSS.

use std::time::Duration;

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::report::{int, ms, table};
use crate::stats::median;
use crate::{Ctx, procs};

/// Half of the 20,000 single-case requests/s ingest is asked to reach.
const HALF_TARGET: u32 = 10_000;

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    println!("== ingest alone");
    let sink = crate::sink::spawn()?;
    let port = stack::free_port()?;
    let bin = ctx.bin("ingest");
    let env = vec![
        ("PORT".to_owned(), port.to_string()),
        ("HOST".to_owned(), "127.0.0.1".to_owned()),
        ("K_SINK".to_owned(), sink.url.clone()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ];
    let proc = procs::Proc::spawn(&bin, &env)?;
    let url = format!("http://127.0.0.1:{port}");
    procs::wait_http_ok(
        &ctx.http,
        &format!("{url}/healthz"),
        Duration::from_secs(10),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = procs::rss_mib(proc.pid()).unwrap_or(0.0);
    let target = format!("ingest={url}");
    let base = |extra: &[&str]| crate::loadgen::Loadtest::args(ctx.secs, &target, extra);
    let single_args = base(&["--users", "64"]);
    let batch_args = base(&["--users", "16", "--batch", "100"]);
    let mut single = Vec::new();
    let mut batch = Vec::new();
    for i in 0..ctx.runs {
        println!("  run {}/{}", i + 1, ctx.runs);
        single.push(ctx.loadtest.run(&single_args)?);
        batch.push(ctx.loadtest.run(&batch_args)?);
    }
    let single_rps = median(
        &single
            .iter()
            .map(|r| r.total.requests_per_s)
            .collect::<Vec<_>>(),
    );
    // The open-model runs use the peak run's 64 connections: an ingress
    // holds a bounded set of keep-alive connections to a pod, and arrivals
    // that find them all busy go out late and count from when they were due.
    let half = (single_rps / 2.0).round().max(1.0);
    let half_args = base(&["--rate", &half.to_string(), "--max-in-flight", "64"]);
    let target_half_args = base(&["--rate", &HALF_TARGET.to_string(), "--max-in-flight", "64"]);
    let mut at_half = Vec::new();
    let mut at_target_half = Vec::new();
    for _ in 0..ctx.runs {
        at_half.push(ctx.loadtest.run(&half_args)?);
        at_target_half.push(ctx.loadtest.run(&target_half_args)?);
    }
    let peak_rss = procs::peak_rss_mib(proc.pid()).unwrap_or(0.0);
    drop(proc);
    // Every case ingest accepted must have reached the sink as a CloudEvent.
    let accepted: u64 = [&single, &batch, &at_half, &at_target_half]
        .iter()
        .flat_map(|rs| rs.iter())
        .map(|r| r.total.cases_accepted)
        .sum();
    let delivered = sink.counts.events.load(Ordering::Relaxed);
    let refused = sink.counts.refused.load(Ordering::Relaxed);
    anyhow::ensure!(
        refused == 0 && delivered >= accepted,
        "the sink received {delivered} events and refused {refused} requests for {accepted} accepted cases"
    );

    let m = |rs: &[crate::loadgen::Report], f: fn(&crate::loadgen::Report) -> f64| {
        median(&rs.iter().map(f).collect::<Vec<_>>())
    };
    let rows = [
        ("single case", &single, &single_args),
        ("100-case batch", &batch, &batch_args),
        ("single case at half the peak rate", &at_half, &half_args),
        (
            "single case at half the target rate",
            &at_target_half,
            &target_half_args,
        ),
    ];
    let mut out = Vec::new();
    let mut md_rows = Vec::new();
    for (name, rs, args) in rows {
        let rps = m(rs, |r| r.total.requests_per_s);
        let cps = m(rs, |r| r.total.cases_accepted_per_s);
        let p50 = m(rs, |r| r.total.latency_us.p50 as f64);
        let p99 = m(rs, |r| r.total.latency_us.p99 as f64);
        let errors: u64 = rs.iter().map(|r| r.total.errors).sum();
        // This VM's runs differ with the host's load: every run is shown.
        let each = |f: fn(&crate::loadgen::Report) -> f64, show: fn(f64) -> String| {
            let mut v: Vec<f64> = rs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.into_iter().map(show).collect::<Vec<_>>().join(" · ")
        };
        md_rows.push(vec![
            name.to_owned(),
            int(rps),
            int(cps),
            ms(p50),
            ms(p99),
            each(|r| r.total.requests_per_s, int),
            each(|r| r.total.latency_us.p99 as f64, ms),
            errors.to_string(),
            format!("`{}`", crate::loadgen::Loadtest::command(args)),
        ]);
        out.push(json!({"load": name, "requests_per_s": rps, "cases_per_s": cps, "p50_us": p50, "p99_us": p99, "errors": errors, "command": crate::loadgen::Loadtest::command(args)}));
    }
    let size = procs::file_mib(&bin);
    let md = format!(
        "Ingest alone, sending every case as a binary-mode CloudEvent to an HTTP/1.1 sink (a thread of the bench process that checks the CloudEvent headers and answers 202), load generator on one thread, all on this machine; runs at a fixed rate keep the peak run's 64 connections. Medians of {} runs of {} s; the sink received {} events for {} accepted cases.\n\n{}\nBinary size {:.1} MiB (release, `target/release/ingest`), idle RSS {:.1} MiB, peak RSS {:.1} MiB.\n\nTargets: ≥ 20,000 single-case requests/s; p99 < 5 ms at half that rate; idle RSS < 15 MB.\n",
        ctx.runs,
        ctx.secs,
        int(delivered as f64),
        int(accepted as f64),
        table(
            &[
                "load",
                "requests/s",
                "cases/s",
                "p50",
                "p99",
                "requests/s, each run",
                "p99, each run",
                "errors",
                "command"
            ],
            &md_rows
        ),
        size,
        idle_rss,
        peak_rss
    );
    println!("{md}");
    crate::report::write_json(
        &ctx.results,
        "ingest",
        &json!({"machine": ctx.machine, "runs": ctx.runs, "secs": ctx.secs, "loads": out, "binary_mib": size, "idle_rss_mib": idle_rss, "peak_rss_mib": peak_rss, "events_at_sink": delivered, "cases_accepted": accepted}),
    )?;
    crate::report::update_markdown(&ctx.markdown, "ingest", &md)
}
