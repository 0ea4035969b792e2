//! One consumer of a group: reads its streams, hands each entry to the handler, and
//! settles it by what the handler's error means (see `failure`).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::StreamExt;
use redis::{
    AsyncCommands,
    aio::MultiplexedConnection,
    streams::{StreamId, StreamReadOptions, StreamReadReply},
};
use settle::envelope;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

mod settle;

use super::{
    ConsumerConfig, Handler,
    failure::{Failure, classify},
};
use crate::{
    http::error::DependencyError,
    messaging::events::Envelope,
    runtime::infra::{Readers, Redis},
};

pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) struct Consumer<H> {
    pub(super) readers: Readers,
    pub(super) redis: Redis,
    pub(super) config: ConsumerConfig,
    handler: Arc<H>,
    pub(super) shutdown: CancellationToken,
    /// Entries this consumer is waiting on (early, or their dependency down): another
    /// read of them is not another delivery.
    held: Mutex<HashSet<String>>,
    /// Early entries come back here once due.
    again: mpsc::UnboundedSender<(String, StreamId)>,
    /// One permit per entry being handled: the reader reads as many new entries as there
    /// are free slots, so one slow entry holds one slot, not the whole batch read with it.
    slots: Arc<Semaphore>,
}

impl<H: Handler> Consumer<H> {
    pub(super) fn new(
        readers: Readers,
        redis: Redis,
        config: ConsumerConfig,
        handler: Arc<H>,
        shutdown: CancellationToken,
        again: mpsc::UnboundedSender<(String, StreamId)>,
    ) -> Self {
        Self {
            readers,
            redis,
            handler,
            shutdown,
            held: Mutex::new(HashSet::new()),
            again,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
        }
    }

    /// Handles early entries again once they are due.
    pub(super) async fn run_again(
        self: Arc<Self>,
        mut due: mpsc::UnboundedReceiver<(String, StreamId)>,
    ) {
        loop {
            tokio::select! {
                next = due.recv() => match next {
                    Some(entry) => {
                        let this = self.clone();
                        tokio::spawn(async move { this.process(vec![entry]).await });
                    }
                    None => return,
                },
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    pub(super) async fn run_reader(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        let shutdown = self.shutdown.clone();
        while !shutdown.is_cancelled() {
            let session = self.read_session();
            match tokio::select! { r = session => r, _ = shutdown.cancelled() => Ok(()) } {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(group = %self.config.group, error = %e, "event reader failed, reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One connection's life: create the groups, go once through this consumer's own
    /// pending entries (from a restart), then read new ones until an error or shutdown.
    async fn read_session(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut pooled = self.readers.get().await?;
        let conn: &mut MultiplexedConnection = &mut pooled;
        self.create_groups(conn).await?;
        let streams = self.config.streams();
        // Each stream's cursor moves past what was read, so an entry that fails again is
        // not read again at once: the reclaimer retries it after the idle timeout.
        let mut cursors = vec!["0-0".to_string(); streams.len()];
        loop {
            let entries = self
                .read(conn, &streams, &cursors, None, self.config.batch)
                .await?;
            if entries.is_empty() {
                break;
            }
            for (stream, entry) in &entries {
                if let Some(i) = streams.iter().position(|s| s == stream) {
                    cursors[i] = entry.id.clone();
                }
            }
            self.process(entries).await;
        }
        let new = vec![">".to_string(); streams.len()];
        let block = Some(self.config.block.as_millis() as usize);
        while !self.shutdown.is_cancelled() {
            // A slot first, so nothing is read while every handler is busy; then a whole
            // batch, started together as slots free up (so their writes can share
            // commands), the reader waiting only until each has started.
            let mut first = Some(self.slot().await);
            let entries = self
                .read(conn, &streams, &new, block, self.config.batch)
                .await?;
            for (stream, entry) in entries {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => self.slot().await,
                };
                let this = self.clone();
                tokio::spawn(async move {
                    this.settle(&stream, entry).await;
                    drop(permit);
                });
            }
        }
        Ok(())
    }

    async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots are never closed")
    }

    pub(super) async fn create_groups(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> anyhow::Result<()> {
        for stream in self.config.streams() {
            // From the start of the stream: events published before this service first
            // ran are still its to consume.
            let created: redis::RedisResult<()> = conn
                .xgroup_create_mkstream(&stream, &self.config.group, "0")
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        streams: &[String],
        ids: &[String],
        block: Option<usize>,
        count: usize,
    ) -> anyhow::Result<Vec<(String, StreamId)>> {
        let mut options = StreamReadOptions::default()
            .group(&self.config.group, &self.config.consumer)
            .count(count);
        if let Some(ms) = block {
            options = options.block(ms);
        }
        let reply: Option<StreamReadReply> = match conn.xread_options(streams, ids, &options).await
        {
            Ok(reply) => reply,
            // Redis lost the groups (restart without persistence): make them again.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.create_groups(conn).await?;
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| {
                        let key = k.key;
                        k.ids.into_iter().map(move |id| (key.clone(), id))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    pub(super) async fn process(self: &Arc<Self>, entries: Vec<(String, StreamId)>) {
        futures::stream::iter(entries)
            .for_each_concurrent(
                self.config.concurrency.max(1),
                |(stream, entry)| async move { self.settle(&stream, entry).await },
            )
            .await;
    }

    async fn settle(self: &Arc<Self>, stream: &str, entry: StreamId) {
        if let Err(e) = self.process_one(stream, entry).await {
            tracing::warn!(error = %e, "could not settle an event entry; it stays pending");
        }
    }

    async fn process_one(
        self: &Arc<Self>,
        stream: &str,
        entry: StreamId,
    ) -> Result<(), DependencyError> {
        let event = match envelope(&entry.map) {
            // An entry whose own fields are empty was deleted meanwhile: nothing to do.
            Err(_) if entry.map.is_empty() => return self.ack(stream, &entry.id).await,
            Err(e) => {
                tracing::error!(stream, entry = %entry.id, error = %format!("{e:#}"), "malformed event dead-lettered");
                self.dead_letter(stream, &entry, None, &e, 1).await?;
                return self.ack(stream, &entry.id).await;
            }
            Ok(event) => event,
        };
        // Entry ids are unique per stream only.
        let key = format!("{stream} {}", entry.id);
        if !self.held.lock().expect("held set").insert(key.clone()) {
            return Ok(()); // already being handled by this consumer
        }
        let result = self.handle_until_settled(stream, &entry, &event).await;
        match result {
            Ok(Some(wait)) => {
                // Early: waited for apart from the batch, so the reader goes on.
                let (this, stream) = (self.clone(), stream.to_string());
                tokio::spawn(async move {
                    let kept = this.wait_holding(&stream, &entry.id, wait).await;
                    this.held.lock().expect("held set").remove(&key);
                    if kept {
                        let _ = this.again.send((stream, entry));
                    }
                });
                Ok(())
            }
            other => {
                self.held.lock().expect("held set").remove(&key);
                other.map(|_| ())
            }
        }
    }

    /// Handles the event, waiting out a dependency that is down, so that uses up no
    /// delivery; `Some(wait)` for an event that is early.
    async fn handle_until_settled(
        &self,
        stream: &str,
        entry: &StreamId,
        event: &Envelope,
    ) -> Result<Option<Duration>, DependencyError> {
        let mut backoff = MIN_BACKOFF.min(self.config.max_backoff);
        let mut failures = 0u32;
        loop {
            let error = match self.handler.handle(event).await {
                Ok(()) => return self.ack(stream, &entry.id).await.map(|()| None),
                Err(e) => e,
            };
            match classify(&error) {
                Failure::Rejected => {
                    return self
                        .reject(stream, entry, event, &error)
                        .await
                        .map(|()| None);
                }
                Failure::Later(due) => {
                    return Ok(Some((due - Utc::now()).to_std().unwrap_or_default()));
                }
                Failure::Dependency => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(stream, entry = %entry.id, failures, error = %format!("{error:#}"), "a dependency is down; the event waits for it");
                    }
                }
            }
            if !self.wait_holding(stream, &entry.id, backoff).await {
                return Ok(None); // shutting down: it stays pending for whoever comes next
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// Sleeps while keeping the entry ours: its idle time is reset now and then, so the
    /// reclaimer of another consumer does not take it (and count a delivery). False on
    /// shutdown.
    async fn wait_holding(&self, stream: &str, id: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let touch_every = (self.config.claim_idle / 3).max(Duration::from_millis(10));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(touch_every)) => {}
                _ = self.shutdown.cancelled() => return false,
            }
            self.touch(stream, id).await;
        }
    }
}
