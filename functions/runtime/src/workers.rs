//! Connection workers: one single-threaded runtime per core, each serving
//! the connections handed to it in turn (the threading model of Envoy and
//! nginx). A connection, its requests and the sink connections they open
//! stay on one thread, so a request never waits on a wake-up from another
//! core, and nothing in its path is contended. Background work (stores,
//! gRPC channels, flushers) stays on the main runtime, and so do the
//! streams of an HTTP/2 connection ([`StreamExecutor`]): one gRPC channel
//! carries a whole client's traffic, which one thread must not serialise.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The connection workers of a process.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `n` (at least 1) worker threads.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("conn-worker-{i}"))
                    .spawn(move || rt.block_on(stop.cancelled()))?,
            );
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            threads,
            stop,
        })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs `task` on the next worker, in turn.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(task);
    }
}

impl Drop for Workers {
    /// Stops the workers once their tasks are done with: called after the drain.
    fn drop(&mut self) {
        self.stop.cancel();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs HTTP/2 streams on the main (work-stealing) runtime, so the requests
/// of one multiplexed connection spread over every core.
#[derive(Clone)]
pub struct StreamExecutor(Handle);

impl StreamExecutor {
    /// Spawns onto the runtime this is called from.
    pub fn current() -> StreamExecutor {
        StreamExecutor(Handle::current())
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}
