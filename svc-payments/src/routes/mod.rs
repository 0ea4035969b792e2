mod payments;
mod webhooks;

pub use payments::{Payment, PaymentsApi, view};
pub use webhooks::WebhookApi;
