//! The MongoDB connection and collections. The client connects lazily and
//! reconnects by itself; indexes are created once, on first use, and retried.

use std::time::Duration;

use anyhow::Context as _;
use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::OnceCell;

use crate::config::MongoConfig;

/// Collection names.
pub const CASES: &str = "cases";
pub const AREA_STATS: &str = "area_stats";
pub const STATE_STATS: &str = "state_stats";
pub const TOTALS: &str = "totals";
/// The counting outbox: one record per stored batch (see [`crate::batch`]).
pub const BATCHES: &str = "stats_batches";
/// The Redis half of a counted flush, until it is applied (at most once).
pub const OUTBOX: &str = "stats_outbox";
pub const INGEST_LOG: &str = "ingest_log";
/// Counting records aggregate cannot read, with the reason (see `stats`).
pub const DEAD_BATCHES: &str = "stats_batches_dead_letter";

#[derive(Clone)]
pub struct Mongo {
    client: Client,
    db: Database,
    indexes: std::sync::Arc<OnceCell<()>>,
}

impl Mongo {
    /// Parses the URI and sets up the client; connects on first use.
    pub async fn connect_lazy(config: &MongoConfig) -> anyhow::Result<Mongo> {
        let mut opts = ClientOptions::parse(&config.uri).await.with_context(|| {
            format!(
                "MONGODB_URI is not a valid MongoDB URI: {}",
                redact(&config.uri)
            )
        })?;
        opts.app_name
            .get_or_insert_with(|| "covid-realtime".to_owned());
        opts.server_selection_timeout
            .get_or_insert(Duration::from_secs(3));
        opts.connect_timeout.get_or_insert(Duration::from_secs(2));
        opts.max_pool_size.get_or_insert(32);
        let client = Client::with_options(opts).context("cannot set up the MongoDB client")?;
        let db = client.database(&config.database);
        Ok(Mongo {
            client,
            db,
            indexes: Default::default(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Creates the indexes the case writers and the aggregate rely on
    /// (idempotent). The ingest log's TTL index is not one of them: it
    /// belongs to ingest (`IngestLog::ensure_ttl_index`), so no setting of
    /// the log can stop a case write, count or sweep.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        self.indexes
            .get_or_try_init(|| async {
                let cases = self.collection(CASES);
                cases
                    .create_indexes([
                        // Filtered pages of the stored collection, newest first.
                        IndexModel::builder()
                            .keys(doc! {"location": 1, "_id": -1})
                            .build(),
                        IndexModel::builder()
                            .keys(doc! {"state": 1, "_id": -1})
                            .build(),
                    ])
                    .await?;
                // The sweep replays records older than a bound.
                for outbox in [BATCHES, OUTBOX] {
                    self.collection(outbox)
                        .create_index(IndexModel::builder().keys(doc! {"created": 1}).build())
                        .await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// A `/readyz` check: a `ping` round trip.
    pub fn ready_check(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
    + Send
    + Sync
    + 'static {
        let m = self.clone();
        move || {
            let m = m.clone();
            Box::pin(async move { m.ping().await })
        }
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), String> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The URI without its password, for error messages and logs.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &uri[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &uri[..s + 3], &uri[at..])
        }
        _ => uri.to_owned(),
    }
}

/// Whether a MongoDB error is a duplicate key (code 11000), however the
/// server reports it: a write error of an insert, or a command error.
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    const DUPLICATE_KEY: i32 = 11000;
    match &*e.kind {
        ErrorKind::InsertMany(m) => m
            .write_errors
            .iter()
            .flatten()
            .any(|w| w.code == DUPLICATE_KEY),
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("mongodb://u:secret@h:27017/db"),
            "mongodb://u:***@h:27017/db"
        );
        assert_eq!(super::redact("mongodb://h:27017"), "mongodb://h:27017");
    }
}
