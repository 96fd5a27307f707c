//! One way to gather work into bulk calls: ingest's gRPC calls, grpc-writer's
//! MongoDB writes and aggregate's counting transactions all use it.
//!
//! Callers [`submit`](Batcher::submit) items; a task takes what is queued
//! into one call to the bulk handler, and each caller gets its own output.
//! - **Bounds.** A call carries at most `max_items` items and `max_weight`
//!   weight (cases, say); an item is never split, and one heavier than
//!   `max_weight` goes alone. At most `in_flight` calls run at once; the queue
//!   holds `queue` items, and past it `submit` waits.
//! - **No timer on a lone item.** A call takes what is queued the moment a
//!   call slot is free, so under load the queue fills while calls are busy
//!   and one call carries many items, and with no load an item goes out at
//!   once. With `pace` set, a call that follows one that was not full starts
//!   no sooner than `pace` after it: under steady traffic each call carries
//!   `pace` worth of items, while an item after a quiet spell still goes out
//!   at once. (No first item is ever held back waiting for company: that
//!   would cost every request the wait when the system is idle, and buy
//!   nothing under load that `pace` does not.)
//! - **Deadlines.** An item whose deadline passes while it is still queued
//!   is taken out and never handed to the handler ([`Unanswered::NotSent`]):
//!   its caller can say for certain that nothing was done. One whose call is
//!   under way is [`Unanswered::InFlight`], and its caller may still await the
//!   outcome. A caller that goes away withdraws its queued item the same way.
//! - **Drain.** The task ends once every handle is dropped and every queued
//!   item is answered, so a function that runs it as tracked work finishes
//!   its queue on SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How a [`Batcher`] groups items.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most items in one call.
    pub max_items: usize,
    /// Most weight in one call (an item heavier than this goes alone).
    pub max_weight: usize,
    /// Least time from a call that was not full to the start of the next.
    pub pace: Duration,
    /// Most calls running at once.
    pub in_flight: usize,
    /// Most items queued; past it `submit` waits for room.
    pub queue: usize,
}

/// What became of an item that got no answer.
pub enum Unanswered<O> {
    /// Never handed to the handler: its deadline passed while it was queued,
    /// or the batcher has stopped. Nothing was done with it.
    NotSent,
    /// Its call had not answered by the deadline; await this for the outcome.
    InFlight(Pending<O>),
    /// Its call ended without an answer for it: the outcome is unknown.
    Lost,
}

impl<O> std::fmt::Debug for Unanswered<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unanswered::NotSent => "NotSent",
            Unanswered::InFlight(_) => "InFlight",
            Unanswered::Lost => "Lost",
        })
    }
}

/// The answer of an item whose call is still under way.
pub struct Pending<O>(oneshot::Receiver<O>);

impl<O> Pending<O> {
    /// The item's output, or [`Unanswered::Lost`] if its call ended without one.
    pub async fn outcome(self) -> Result<O, Unanswered<O>> {
        self.0.await.map_err(|_| Unanswered::Lost)
    }
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

/// One caller's item, waiting in the queue.
struct Queued<I, O> {
    item: I,
    weight: usize,
    /// QUEUED until the task takes it (TAKEN) or its caller gives up first (WITHDRAWN).
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<O>,
}

impl<I, O> Queued<I, O> {
    /// The task takes the item unless its caller has withdrawn it.
    fn take(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Takes a queued item back; false when the task has already taken it.
fn withdraw(state: &AtomicU8) -> bool {
    state
        .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Withdraws the item if its caller's future is dropped while it is queued.
struct WithdrawOnDrop(Arc<AtomicU8>);

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        withdraw(&self.0);
    }
}

/// A handle to submit items; clone it freely.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Queued<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// A batcher and the task that runs its calls; spawn the task where it
    /// belongs (tracked work, so that shutdown drains the queue). `handler`
    /// gets a call's items in order and returns their outputs in the same
    /// order; an item it returns no output for is [`Unanswered::Lost`].
    pub fn new<H, F>(limits: Limits, handler: H) -> (Self, impl Future<Output = ()> + Send)
    where
        H: Fn(Vec<I>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<O>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        (Batcher { tx }, run(rx, limits, Arc::new(handler)))
    }

    /// Queues `item` for the next call; its output, or, at `deadline`, what
    /// became of it. Dropping the returned future withdraws a queued item.
    pub async fn submit(
        &self,
        item: I,
        weight: usize,
        deadline: Option<Instant>,
    ) -> Result<O, Unanswered<O>> {
        let (reply, mut rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let _withdraw = WithdrawOnDrop(state.clone());
        let queued = Queued {
            item,
            weight,
            state: state.clone(),
            reply,
        };
        let sent = match deadline {
            Some(at) => match tokio::time::timeout_at(at, self.tx.send(queued)).await {
                Ok(sent) => sent,
                Err(_) => return Err(Unanswered::NotSent),
            },
            None => self.tx.send(queued).await,
        };
        if sent.is_err() {
            return Err(Unanswered::NotSent);
        }
        let answer = match deadline {
            Some(at) => match tokio::time::timeout_at(at, &mut rx).await {
                Ok(answer) => answer,
                Err(_) if withdraw(&state) => return Err(Unanswered::NotSent),
                Err(_) => return Err(Unanswered::InFlight(Pending(rx))),
            },
            None => (&mut rx).await,
        };
        // No answer: dropped by the stopping task before it was taken, or its
        // call ended without an output for it.
        answer.map_err(|_| {
            if withdraw(&state) {
                Unanswered::NotSent
            } else {
                Unanswered::Lost
            }
        })
    }
}

async fn run<I, O, H, F>(mut rx: mpsc::Receiver<Queued<I, O>>, limits: Limits, handler: Arc<H>)
where
    I: Send + 'static,
    O: Send + 'static,
    H: Fn(Vec<I>) -> F + Send + Sync + 'static,
    F: Future<Output = Vec<O>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    let mut calls = JoinSet::new();
    // An item that would have taken a call past `max_weight` opens the next one.
    let mut carried: Option<Queued<I, O>> = None;
    // After a call that was not full: when the next may start (`pace`).
    let mut paced_until: Option<Instant> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => break,
            },
        };
        // Wait for a free call slot first: while every slot is busy, more
        // items queue up and ride along in this call.
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if let Some(at) = paced_until {
            tokio::time::sleep_until(at).await;
        }
        let started = Instant::now();
        let mut batch = Vec::new();
        let mut weight = 0;
        let mut next = Some(first);
        loop {
            if let Some(q) = next.take() {
                // Still queued (its caller may yet withdraw it) until taken.
                if !batch.is_empty() && weight + q.weight > limits.max_weight {
                    carried = Some(q);
                    break;
                }
                // Withdrawn by its caller while queued: dropped unsent.
                if q.take() {
                    weight += q.weight;
                    batch.push(q);
                }
            }
            if batch.len() >= limits.max_items || weight >= limits.max_weight {
                break;
            }
            next = match rx.try_recv() {
                Ok(q) => Some(q),
                Err(_) => break,
            };
        }
        if batch.is_empty() {
            continue;
        }
        let full =
            carried.is_some() || batch.len() >= limits.max_items || weight >= limits.max_weight;
        paced_until = (!full && !limits.pace.is_zero()).then(|| started + limits.pace);
        let handler = handler.clone();
        calls.spawn(async move {
            let _permit = permit;
            let (items, replies): (Vec<I>, Vec<oneshot::Sender<O>>) =
                batch.into_iter().map(|q| (q.item, q.reply)).unzip();
            let outputs = handler(items).await;
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(output);
            }
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;
