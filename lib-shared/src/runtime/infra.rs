//! Connections to MongoDB and Redis, built once at start-up and shared by handle.

use std::time::Duration;

use anyhow::Context;
use deadpool_redis::{Manager, Runtime};
use mongodb::{Client, Database, bson::doc, options::ClientOptions};
use redis::{
    AsyncConnectionConfig,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

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

/// Connections for blocking stream reads (`XREADGROUP BLOCK`). Requests never take
/// from this pool: each check-out costs a recycling `PING`, which the shared connection
/// above avoids. A reader holds one connection for a whole read session, blocked most of
/// the time, so a pool of dedicated connections is the right shape there.
pub type Readers = deadpool_redis::Pool;

/// The longest a blocking read may wait; the readers' reply timeout allows for it.
pub const MAX_BLOCK: Duration = Duration::from_secs(2);

/// Readers per service: one per consumer group, with room to spare.
const READERS: usize = 4;

pub fn readers(settings: &CommonSettings) -> anyhow::Result<Readers> {
    readers_for(settings.redis_url.expose())
}

pub fn readers_for(redis_url: &str) -> anyhow::Result<Readers> {
    // Past the longest block, or a quiet stream would look like a dead connection.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(DEPENDENCY_TIMEOUT))
        .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(3)));
    let manager = Manager::new_with_config(redis_url, config)
        .context("REDIS_URL is not a valid Redis URL")?;
    deadpool_redis::Pool::builder(manager)
        .max_size(READERS)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(DEPENDENCY_TIMEOUT))
        .recycle_timeout(Some(DEPENDENCY_TIMEOUT))
        .build()
        .context("building the Redis readers' pool")
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
