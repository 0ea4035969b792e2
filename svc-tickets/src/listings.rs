//! The tickets' use cases: list, show, list for sale, edit, and (in `sale`) the sale
//! status that follows order events. Routes and the consumer come through here; the
//! store, the cache and the locks are this layer's own.

mod sale;

use std::{collections::HashMap, sync::Mutex};

use lib_shared::{
    domain::{locks::Locks, money::Price, states::TicketStatus},
    http::error::DependencyError,
    messaging::outbox::Outbox,
};
use mongodb::{Database, bson::oid::ObjectId};

use crate::{
    cache::TicketCache,
    domain::TicketTitle,
    store::{self, Decision, ListQuery, Outcome, RecordPage, TicketRecord},
};

pub struct Listings {
    db: Database,
    outbox: Outbox,
    cache: TicketCache,
    locks: Locks,
    /// Present while the locks in Redis are whole (see `lock_rebuild`).
    locks_marker: String,
    /// By first page (the cache's key, so at most as many as it has), the oldest ticket
    /// the last read of it fetched: the next read of that page starts there, so it costs
    /// a page's worth of entries however long the listing grows. A hint: a read it leaves
    /// short is made again without it.
    floors: Mutex<HashMap<String, ObjectId>>,
}

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("ticket not found")]
    NotFound,
    #[error("not the seller")]
    NotSeller,
    #[error("ticket is {0}")]
    NotAvailable(TicketStatus),
    #[error("ticket changed meanwhile")]
    Changed,
    /// Not at the version the edit was based on.
    #[error("ticket is at another version")]
    Stale,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

impl Listings {
    pub fn new(
        db: Database,
        outbox: Outbox,
        cache: TicketCache,
        locks: Locks,
        locks_marker: String,
    ) -> Self {
        Self {
            db,
            outbox,
            cache,
            locks,
            locks_marker,
            floors: Mutex::default(),
        }
    }

    /// One page of the listing, from the cache when it holds the page.
    pub async fn page(&self, query: &ListQuery) -> Result<RecordPage, DependencyError> {
        let key = query.cache_key();
        let generation = match &key {
            None => None,
            Some(key) => match self.cache.page(key).await {
                Ok(page) => return Ok(page),
                Err(generation) => generation,
            },
        };
        let mut found = self.read(query, key.as_deref()).await?;
        let next_cursor = (found.len() > query.limit as usize).then(|| {
            found.truncate(query.limit as usize);
            found.last().map(TicketRecord::id_hex)
        });
        let page = RecordPage {
            items: found,
            next_cursor: next_cursor.flatten(),
        };
        if let (Some(key), Some(generation)) = (key, generation) {
            self.cache.fill_page(&key, &generation, &page).await;
        }
        Ok(page)
    }

    /// The page and the one ticket beyond it (which tells whether a next page exists).
    async fn read(
        &self,
        query: &ListQuery,
        key: Option<&str>,
    ) -> Result<Vec<TicketRecord>, DependencyError> {
        let wanted = query.limit as usize + 1;
        let Some(key) = key else {
            return store::list(&self.db, query, None, wanted).await;
        };
        // Twice a page between the floor and the top, so that tickets leaving a status
        // listing (reserved, sold) seldom leave a read short.
        let reach = 2 * wanted;
        let floor = self.floors.lock().expect("page floors").get(key).copied();
        let mut found = match floor {
            Some(floor) => store::list(&self.db, query, Some(floor), reach).await?,
            None => Vec::new(),
        };
        let short = found.len() < wanted;
        if short {
            found = store::list(&self.db, query, None, reach).await?;
        }
        {
            let mut floors = self.floors.lock().expect("page floors");
            match found.get(reach - 1) {
                Some(oldest) => {
                    floors.insert(key.to_owned(), oldest.id);
                }
                // The whole listing is within reach: reading it all is cheap.
                None if short => {
                    floors.remove(key);
                }
                // Between a page and two above the floor: it still serves.
                None => {}
            }
        }
        found.truncate(wanted);
        Ok(found)
    }

    pub async fn find(&self, id: ObjectId) -> Result<Option<TicketRecord>, DependencyError> {
        if let Some(ticket) = self.cache.ticket(&id.to_hex()).await {
            return Ok(Some(ticket));
        }
        let found = store::find(&self.db, id).await?;
        if let Some(ticket) = &found {
            self.cache.fill(ticket).await;
        }
        Ok(found)
    }

    #[tracing::instrument(skip_all, fields(%seller))]
    pub async fn list_for_sale(
        &self,
        seller: String,
        title: TicketTitle,
        price: Price,
    ) -> Result<TicketRecord, DependencyError> {
        let now = store::now();
        let ticket = TicketRecord {
            id: ObjectId::new(),
            title: title.into_inner(),
            price_cents: price.cents(),
            currency: "usd".into(),
            user_id: seller,
            status: TicketStatus::Available,
            order_id: None,
            reserved_until: None,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        store::insert(&self.outbox, &ticket).await?;
        tracing::info!(ticket_id = %ticket.id, "ticket listed");
        self.cache.changed(&ticket).await;
        Ok(ticket)
    }

    /// New title and price, by the seller, while the ticket is available (and, with
    /// `based_on`, still at that version).
    #[tracing::instrument(skip_all, fields(ticket_id = %id))]
    pub async fn edit(
        &self,
        id: ObjectId,
        seller: &str,
        based_on: Option<i64>,
        title: TicketTitle,
        price: Price,
    ) -> Result<TicketRecord, EditError> {
        let mut refusal = None;
        let outcome = store::change(&self.db, &self.outbox, id, store::Via::Request, |t| {
            refusal = edit_refusal(t, seller, based_on);
            if refusal.is_some() {
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                title: title.clone().into_inner(),
                price_cents: price.cents(),
                ..t.clone()
            })
        })
        .await?;
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        match outcome {
            Outcome::Changed(t) => {
                self.cache.changed(&t).await;
                Ok(t)
            }
            Outcome::Kept(t) => Ok(t),
            Outcome::NotFound => Err(EditError::NotFound),
            Outcome::Conflict => Err(EditError::Changed),
        }
    }
}

fn edit_refusal(ticket: &TicketRecord, seller: &str, based_on: Option<i64>) -> Option<EditError> {
    if ticket.user_id != seller {
        return Some(EditError::NotSeller);
    }
    if based_on.is_some_and(|v| v != ticket.version) {
        return Some(EditError::Stale);
    }
    if ticket.status != TicketStatus::Available {
        return Some(EditError::NotAvailable(ticket.status));
    }
    None
}
