//! grpc-writer with aggregate as its sink, both in-process on free ports
//! over their own database and key prefix, plus the stores the checks read.

use std::time::{Duration, Instant};

use events::WritePath;
use runtime::testing::spawn;
use store::testing::Stores;
use store::{Aggregator, CaseStore};

pub struct Pair {
    pub writer: String,
    pub aggregate: String,
    pub cases: CaseStore,
    pub agg: Aggregator,
}

pub async fn start(name: &str) -> Pair {
    let stores = Stores::new(name).await;
    let env = stores.env_with(&[("AGGREGATE_FLUSH_MS", "5"), ("SWEEP_INTERVAL_MS", "100")]);
    let aggregate = spawn::<aggregate::Function>(&env).await;
    let sink = format!("{}/", aggregate.url);
    let mut env = env.clone();
    env.push(("K_SINK", &sink));
    let writer = spawn::<grpc_writer::Function>(&env).await;
    Pair {
        writer: writer.url,
        aggregate: aggregate.url,
        cases: stores.cases(),
        agg: stores.aggregator(),
    }
}

impl Pair {
    /// Waits (at most 20 s) until `n` documents are stored and counted.
    pub async fn wait_stored_and_counted(&self, n: u64) {
        let start = Instant::now();
        loop {
            let documents = self.cases.count(Some(WritePath::Grpc)).await.unwrap();
            let counted = self.agg.totals().await.unwrap().total;
            if documents == n && counted == n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "expected {n} documents, all counted: {documents} documents, {counted} counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
