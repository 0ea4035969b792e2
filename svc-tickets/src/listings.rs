//! The tickets' use cases: list, show, list for sale, edit, and (in `sale`) the sale
//! status that follows order events. Routes and the consumer come through here; the
//! store, the cache and the locks are this layer's own.

mod sale;

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
        let mut found = store::list(&self.db, query).await?;
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
