//! Where a payment attempt stands; stored, shown and counted with the same spelling.

use mongodb::bson::Bson;
use poem_openapi::Enum;
use serde::{Deserialize, Serialize};

/// Where a payment attempt stands: `pending` (on its way through Stripe),
/// `requires_action` (the buyer authenticates with `clientSecret` while the reservation is
/// held), `succeeded` (charged; the order completes), `failed` (declined or not
/// authenticated; nothing charged, the order stays payable), `refunding` (charged after
/// the order lost its ticket; the refund is under way) or `refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    RequiresAction,
    Succeeded,
    Failed,
    Refunding,
    Refunded,
}

impl PaymentStatus {
    /// States a charge may still move on from: someone must see each of them to its end.
    pub const OPEN: [Self; 3] = [Self::Pending, Self::RequiresAction, Self::Refunding];
    /// States in which the attempt may still become a sale.
    pub const CHARGING: [Self; 2] = [Self::Pending, Self::RequiresAction];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::RequiresAction => "requires_action",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }

    pub fn is_charging(self) -> bool {
        Self::CHARGING.contains(&self)
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<PaymentStatus> for Bson {
    fn from(status: PaymentStatus) -> Self {
        Bson::String(status.as_str().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spelling_matches_as_str() {
        use PaymentStatus::*;
        for s in [
            Pending,
            RequiresAction,
            Succeeded,
            Failed,
            Refunding,
            Refunded,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str(), "{s:?}");
            assert_eq!(Bson::from(s), mongodb::bson::to_bson(&s).unwrap(), "{s:?}");
        }
    }
}
