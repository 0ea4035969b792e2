//! Lifecycle states and reasons, one enum each: records store them, the API shows them
//! and events carry them, all spelled the same (lowercase on the wire and in MongoDB).

use poem_openapi::Enum;
use serde::{Deserialize, Serialize};

/// Where a ticket is in its sale: `available`, `reserved` while an order holds it, `sold`
/// once paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum TicketStatus {
    Available,
    Reserved,
    Sold,
}

/// Where an order is in its life: `created` while the ticket is held, then `cancelled` or
/// `complete` (paid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum OrderStatus {
    Created,
    Cancelled,
    Complete,
}

/// Why an order was cancelled: by its buyer (`user`) or because its window ended
/// (`expired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum CancelReason {
    User,
    Expired,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::Sold => "sold",
        }
    }
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Cancelled => "cancelled",
            Self::Complete => "complete",
        }
    }

    /// Created or complete: the order holds (or owns) its ticket.
    pub fn is_live(self) -> bool {
        self != Self::Cancelled
    }
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Expired => "expired",
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl From<$t> for mongodb::bson::Bson {
            fn from(value: $t) -> Self {
                Self::String(value.as_str().to_string())
            }
        }
    )*};
}

display_as_str!(TicketStatus, OrderStatus, CancelReason);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spelling_matches_as_str() {
        for s in [
            TicketStatus::Available,
            TicketStatus::Reserved,
            TicketStatus::Sold,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str(), "{s:?}");
        }
        for s in [
            OrderStatus::Created,
            OrderStatus::Cancelled,
            OrderStatus::Complete,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str(), "{s:?}");
        }
        for r in [CancelReason::User, CancelReason::Expired] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str(), "{r:?}");
        }
        assert!(serde_json::from_str::<OrderStatus>("\"paid\"").is_err());
    }
}
