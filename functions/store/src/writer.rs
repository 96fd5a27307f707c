//! What both write paths share: store a batch idempotently with its counting
//! record (retrying while MongoDB is briefly away), then tell the aggregate
//! function with one `case.stored` event naming the record. The event is
//! best-effort: a record whose event is lost is counted by the aggregate's
//! sweep.

use std::sync::Arc;
use std::time::Duration;

use events::{Reported, StoredBatch, WritePath};
use mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT;
use runtime::{Backoff, Context, Sink};
use tokio::sync::Semaphore;

use crate::cases::{CaseStore, InsertOutcome};

/// Most `case.stored` deliveries in flight at once; past that, delivery is
/// left to the sweep instead of queueing without bound.
const EMIT_SLOTS: usize = 64;

#[derive(Clone)]
pub struct Writer {
    cases: CaseStore,
    path: WritePath,
    sink: Option<Sink>,
    source: String,
    ctx: Context,
    slots: Arc<Semaphore>,
}

/// HELP texts of the writers' metrics (grpc-writer and redis-sub).
fn describe_writer_metrics() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "writer_cases_stored_total",
        "Cases written to MongoDB for the first time, by path (grpc, redis)"
    );
    describe_counter!(
        "writer_cases_duplicate_total",
        "Cases already stored under their event id (a redelivery), by path"
    );
    describe_histogram!("writer_batch_size", "Cases per MongoDB write, by path");
    describe_histogram!(
        "writer_write_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one batched MongoDB write, by path"
    );
    describe_counter!(
        "writer_emit_skipped_total",
        "case.stored events not sent because 64 were already in flight (the aggregate sweep counts those batches)"
    );
    describe_counter!(
        "writer_requests_expired_total",
        "Write requests dropped unwritten because their caller's deadline had passed"
    );
    describe_counter!(
        "writer_emit_failed_total",
        "case.stored events the sink did not take after retries"
    );
}

impl Writer {
    pub fn new(ctx: &Context, cases: CaseStore, path: WritePath) -> Writer {
        let p = path.as_str();
        describe_writer_metrics();
        metrics::counter!("writer_cases_stored_total", "path" => p).increment(0);
        metrics::counter!("writer_cases_duplicate_total", "path" => p).increment(0);
        Writer {
            cases,
            path,
            sink: ctx.sink(),
            source: format!("/covid-realtime/{}", ctx.config.service),
            ctx: ctx.clone(),
            slots: Arc::new(Semaphore::new(EMIT_SLOTS)),
        }
    }

    /// Stores `reported`, retrying transient failures until `deadline` has
    /// passed; then emits `case.stored` for the newly stored ones.
    pub async fn write(
        &self,
        reported: &[Reported],
        traceparent: Option<&str>,
        deadline: Duration,
    ) -> mongodb::error::Result<InsertOutcome> {
        self.write_by(reported, traceparent, deadline, None).await
    }

    /// [`Writer::write`] for a caller that gives up at `commit_by`: no
    /// transaction commits after it, and retries stop there
    /// ([`crate::cases::DeadlinePassed`]).
    pub async fn write_by(
        &self,
        reported: &[Reported],
        traceparent: Option<&str>,
        deadline: Duration,
        commit_by: Option<tokio::time::Instant>,
    ) -> mongodb::error::Result<InsertOutcome> {
        let start = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        // An attempt whose commit may have happened: if no later attempt
        // settles it, the caller must hear "unknown", not "not stored".
        let mut maybe_committed: Option<mongodb::error::Error> = None;
        let outcome = loop {
            match self.cases.insert_by(reported, self.path, commit_by).await {
                Ok(o) => break o,
                Err(e)
                    if !crate::cases::is_deadline_passed(&e)
                        && start.elapsed() < deadline
                        && commit_by.is_none_or(|t| tokio::time::Instant::now() < t) =>
                {
                    tracing::warn!(error = %e, cases = reported.len(), "MongoDB write failed; retrying");
                    if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) {
                        maybe_committed = Some(e);
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(maybe_committed.unwrap_or(e)),
            }
        };
        let p = self.path.as_str();
        metrics::counter!("writer_cases_stored_total", "path" => p)
            .increment(outcome.stored.len() as u64);
        metrics::counter!("writer_cases_duplicate_total", "path" => p)
            .increment(outcome.duplicates.len() as u64);
        metrics::histogram!("writer_batch_size", "path" => p).record(reported.len() as f64);
        metrics::histogram!("writer_write_duration_seconds", "path" => p)
            .record(start.elapsed().as_secs_f64());
        self.emit(&outcome, traceparent);
        Ok(outcome)
    }

    fn emit(&self, outcome: &InsertOutcome, traceparent: Option<&str>) {
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let Some(batch) = outcome.batch.clone() else {
            return;
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            metrics::counter!("writer_emit_skipped_total").increment(1);
            return;
        };
        let event = StoredBatch {
            batch,
            cases: outcome.stored.len() as u64,
            record: outcome
                .carried
                .as_deref()
                .map(crate::batch::Carried::encode),
        }
        .to_event(&self.source, traceparent);
        let traceparent = traceparent.map(str::to_owned);
        self.ctx.tasks.spawn(async move {
            let _permit = permit;
            if let Err(e) = sink.send_with_retry(&event, traceparent.as_deref(), Duration::from_secs(30)).await {
                metrics::counter!("writer_emit_failed_total").increment(1);
                tracing::warn!(error = %e, "case.stored not delivered; the aggregate sweep will count these cases");
            }
        });
    }
}
