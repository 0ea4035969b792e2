//! Connections to MongoDB and Redis, built once at start-up and shared by handle.

use std::time::Duration;

use anyhow::Context;
use deadpool_redis::{Manager, Pool, Runtime, redis::AsyncConnectionConfig};
use mongodb::{Client, Database, bson::doc, options::ClientOptions};

use crate::config::CommonSettings;

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

pub fn redis(settings: &CommonSettings) -> anyhow::Result<Pool> {
    // Redis' own default of 500 ms per reply is too tight for a loaded machine; a
    // dependency that is really down still answers 503 within DEPENDENCY_TIMEOUT.
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(DEPENDENCY_TIMEOUT))
        .set_response_timeout(Some(DEPENDENCY_TIMEOUT));
    let manager = Manager::new_with_config(settings.redis_url.expose(), connection)
        .context("REDIS_URL is not a valid Redis URL")?;
    Pool::builder(manager)
        .max_size(32)
        .wait_timeout(Some(DEPENDENCY_TIMEOUT))
        .create_timeout(Some(DEPENDENCY_TIMEOUT))
        .recycle_timeout(Some(DEPENDENCY_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .context("building the Redis pool")
}

pub async fn ping_mongo(db: &Database) -> anyhow::Result<()> {
    db.run_command(doc! { "ping": 1 })
        .await
        .context("MongoDB ping")?;
    Ok(())
}

pub async fn ping_redis(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = pool.get().await.context("Redis connection")?;
    let _: String = deadpool_redis::redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .context("Redis ping")?;
    Ok(())
}
