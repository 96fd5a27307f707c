//! Live progress on stderr, once a second: a bar on a terminal, plain lines
//! otherwise (CI logs).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::{Model, Shared};
use crate::stats::Live;
use crate::units::format_micros;

/// Prints progress until `done` is cancelled; returns when it is.
pub async fn show(shared: Arc<Shared>, done: tokio_util::sync::CancellationToken) {
    let plan = shared.plan();
    let workers = shared.live.len() as u32;
    // The bar measures time for a fixed duration, else requests.
    let (len, by_time) = match (plan.duration, plan.requests) {
        (Some(d), _) => (d.as_millis() as u64, true),
        (None, Some(n)) => (n, false),
        (None, None) => (0, false),
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:30.cyan/blue}] {msg}")
                .expect("the progress template is valid")
                .progress_chars("=> "),
        );
        bar
    });
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (mut requests, mut errors) = (0u64, 0u64);
    let mut last = shared.start;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = done.cancelled() => break,
        }
        let mut window = Live::default();
        for live in &shared.live {
            live.lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain_into(&mut window);
        }
        let now = tokio::time::Instant::now();
        let secs = (now - last).as_secs_f64();
        last = now;
        requests += window.requests;
        errors += window.errors;
        let active = shared.active.load(Ordering::Relaxed);
        let who = match plan.model {
            Model::Closed { .. } => format!("users {active}/{workers}"),
            Model::Open { .. } => format!("workers {workers}"),
        };
        let line = format!(
            "{:>7.0} req/s  requests {requests}  errors {errors}  p99 {}  {who}",
            window.requests as f64 / secs,
            window.p99().map_or("-".into(), |p| format_micros(p as f64)),
        );
        match &bar {
            Some(bar) => {
                bar.set_position(if by_time {
                    (now - shared.start).as_millis() as u64
                } else {
                    requests
                });
                bar.set_message(line);
            }
            None => eprintln!("[{:>5.0}s] {line}", (now - shared.start).as_secs_f64()),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
