//! The events services exchange, one Redis stream per subject (`events:{subject}`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::domain::{
    money::Price,
    states::{CancelReason, OrderStatus, TicketStatus},
};

pub const TICKET_CREATED: &str = "ticket:created";
pub const TICKET_UPDATED: &str = "ticket:updated";
pub const ORDER_CREATED: &str = "order:created";
pub const ORDER_CANCELLED: &str = "order:cancelled";
pub const ORDER_COMPLETED: &str = "order:completed";
pub const ORDER_EXTENDED: &str = "order:extended";
pub const EXPIRATION_COMPLETE: &str = "expiration:complete";
pub const PAYMENT_CREATED: &str = "payment:created";
pub const PAYMENT_REQUIRES_ACTION: &str = "payment:requires-action";
pub const DEAD_LETTER: &str = "dead-letter";

/// The stream holding one subject's events.
pub fn stream_key(prefix: &str, subject: &str) -> String {
    format!("{prefix}events:{subject}")
}

/// A typed event payload and the subject it is published under.
pub trait Payload: Serialize + DeserializeOwned {
    const SUBJECT: &'static str;
}

/// One stream entry: `id` (UUID v7), `type`, `occurredAt` (RFC 3339) and `data` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: String,
    pub data: String,
}

impl Envelope {
    /// The fields of a stream entry, in the order they are written.
    pub const FIELDS: [&'static str; 4] = ["id", "type", "occurredAt", "data"];

    /// Field and value pairs for a stream entry.
    pub fn fields(&self) -> [(&'static str, &str); 4] {
        let [id, kind, at, data] = Self::FIELDS;
        [
            (id, self.id.as_str()),
            (kind, self.kind.as_str()),
            (at, self.occurred_at.as_str()),
            (data, self.data.as_str()),
        ]
    }
    pub fn new<P: Payload>(payload: &P) -> Self {
        Self {
            id: Uuid::now_v7().to_string(),
            kind: P::SUBJECT.to_string(),
            occurred_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            data: serde_json::to_string(payload).expect("event payloads serialize"),
        }
    }

    pub fn decode<P: Payload>(&self) -> anyhow::Result<P> {
        anyhow::ensure!(
            self.kind == P::SUBJECT,
            "expected {} but got {}",
            P::SUBJECT,
            self.kind
        );
        Ok(serde_json::from_str(&self.data)?)
    }

    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.occurred_at)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketCreated {
    pub id: String,
    pub version: i64,
    pub title: String,
    pub price: Price,
    pub user_id: String,
}

impl Payload for TicketCreated {
    const SUBJECT: &'static str = TICKET_CREATED;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketUpdated {
    pub id: String,
    pub version: i64,
    pub title: String,
    pub price: Price,
    pub user_id: String,
    pub status: TicketStatus,
    pub order_id: Option<String>,
    /// False when this version changed only the sale state (`status`, `orderId`), so a
    /// copy of the title, price and seller can skip it: the version that last changed
    /// them carries the same values. Absent (an older publisher): treat as an edit.
    #[serde(default = "edited_unless_told")]
    pub edited: bool,
}

fn edited_unless_told() -> bool {
    true
}

impl Payload for TicketUpdated {
    const SUBJECT: &'static str = TICKET_UPDATED;
}

/// The ticket an order is for, as events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRef {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricedTicketRef {
    pub id: String,
    pub price: Price,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub id: String,
    pub version: i64,
    pub user_id: String,
    pub status: OrderStatus,
    /// RFC 3339.
    pub expires_at: String,
    pub ticket: PricedTicketRef,
}

impl Payload for OrderCreated {
    const SUBJECT: &'static str = ORDER_CREATED;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub id: String,
    pub version: i64,
    pub ticket: TicketRef,
    /// `user` or `expired`.
    pub reason: CancelReason,
}

impl Payload for OrderCancelled {
    const SUBJECT: &'static str = ORDER_CANCELLED;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    pub id: String,
    pub version: i64,
    pub ticket: TicketRef,
    pub payment_id: String,
}

impl Payload for OrderCompleted {
    const SUBJECT: &'static str = ORDER_COMPLETED;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationComplete {
    pub order_id: String,
}

impl Payload for ExpirationComplete {
    const SUBJECT: &'static str = EXPIRATION_COMPLETE;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    pub id: String,
    pub order_id: String,
    pub stripe_id: String,
    /// Integer cents.
    pub amount: i64,
}

impl Payload for PaymentCreated {
    const SUBJECT: &'static str = PAYMENT_CREATED;
}

/// The reservation was lengthened (the buyer is authenticating a payment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderExtended {
    pub id: String,
    pub version: i64,
    pub ticket: TicketRef,
    /// RFC 3339.
    pub expires_at: String,
}

impl Payload for OrderExtended {
    const SUBJECT: &'static str = ORDER_EXTENDED;
}

/// A payment waits for the buyer (3-D Secure); the order's lock has been lengthened to
/// `holdUntil` and the order should say so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiresAction {
    pub id: String,
    pub order_id: String,
    /// RFC 3339.
    pub hold_until: String,
}

impl Payload for PaymentRequiresAction {
    const SUBJECT: &'static str = PAYMENT_REQUIRES_ACTION;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_use_the_contract_field_names() {
        let e = Envelope::new(&OrderCreated {
            id: "o".into(),
            version: 1,
            user_id: "u".into(),
            status: OrderStatus::Created,
            expires_at: "2026-01-01T00:00:00.000Z".into(),
            ticket: PricedTicketRef {
                id: "t".into(),
                price: Price::from_cents(1050).unwrap(),
            },
        });
        assert_eq!(e.kind, "order:created");
        assert_eq!(
            e.data,
            r#"{"id":"o","version":1,"userId":"u","status":"created","expiresAt":"2026-01-01T00:00:00.000Z","ticket":{"id":"t","price":10.5}}"#
        );
        assert_eq!(Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
        assert!(e.occurred_at().is_some());
        assert!(e.decode::<OrderCancelled>().is_err(), "type is checked");
        assert_eq!(
            e.decode::<OrderCreated>().unwrap().ticket.price.cents(),
            1050
        );
    }
}
