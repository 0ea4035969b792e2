//! Connections to MongoDB and Redis, built once at start-up and shared by handle.

use std::time::Duration;

use anyhow::Context;
use mongodb::{Client, Database, bson::doc, options::ClientOptions};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::runtime::config::CommonSettings;

/// How long a request waits on a dependency before answering 503.
pub const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects lazily: the service starts while MongoDB is still coming up and `/ready` says so.
pub async fn mongo(settings: &CommonSettings) -> anyhow::Result<Database> {
    let mut options = ClientOptions::parse(settings.mongodb_uri.expose())
        .await
        .context("MONGODB_URI is not a valid MongoDB connection string")?;
    options.app_name = Some(format!("ticketing-{}", settings.service));
    options.server_selection_timeout = Some(DEPENDENCY_TIMEOUT);
    options.connect_timeout = Some(DEPENDENCY_TIMEOUT);
    let client = Client::with_options(options).context("building the MongoDB client")?;
    Ok(client.database(&settings.mongodb_database))
}

/// One multiplexed Redis connection per service, shared by every request: concurrent
/// commands are pipelined on it instead of each taking a pooled connection (and a PING to
/// check it). Blocking reads use connections of their own.
pub type Redis = ConnectionManager;

/// Connects lazily and reconnects by itself. While Redis is away a command fails within
/// DEPENDENCY_TIMEOUT (503) rather than queueing behind retries; the next one reconnects.
pub fn redis(settings: &CommonSettings) -> anyhow::Result<Redis> {
    let client = redis::Client::open(settings.redis_url.expose())
        .context("REDIS_URL is not a valid Redis URL")?;
    // Redis' own default of 500 ms per reply is too tight for a loaded machine.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEPENDENCY_TIMEOUT))
        .set_response_timeout(Some(DEPENDENCY_TIMEOUT))
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(client, config).context("building the Redis connection")
}

pub async fn ping_mongo(db: &Database) -> anyhow::Result<()> {
    db.run_command(doc! { "ping": 1 })
        .await
        .context("MongoDB ping")?;
    Ok(())
}

pub async fn ping_redis(redis: &Redis) -> anyhow::Result<()> {
    let mut conn = redis.clone();
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .context("Redis ping")?;
    Ok(())
}
