//! Redis connections: lazy (nothing happens before the first command, so
//! start-up never waits on Redis), reconnecting, with bounded timeouts so a
//! missing Redis turns into a quick error, never a hung request.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A lazily connecting, self-healing connection to `url`.
/// Fails only when the URL itself is invalid.
pub fn connect_lazy(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)
        .with_context(|| format!("REDIS_URL={url:?} is not a Redis URL"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
        .with_context(|| format!("cannot set up a Redis connection to {url}"))
}

/// A `/readyz` check: `PING` on its own clone of the connection.
pub fn ready_check(
    conn: &ConnectionManager,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
+ Send
+ Sync
+ 'static {
    let conn = conn.clone();
    move || {
        let mut c = conn.clone();
        Box::pin(async move { ping(&mut c).await })
    }
}

/// `PING`, for `/readyz`.
pub async fn ping(conn: &mut ConnectionManager) -> Result<(), String> {
    redis::cmd("PING")
        .query_async::<String>(conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
