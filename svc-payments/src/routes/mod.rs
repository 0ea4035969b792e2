mod payments;
mod webhooks;

pub use payments::{Payment, PaymentsApi};
pub use webhooks::WebhookApi;
