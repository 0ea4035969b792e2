//! The payments service: charges an order through one Stripe PaymentIntent per attempt
//! while the order holds its ticket. Attempts are stored before Stripe is called and
//! always end in a sale or a refund, whatever stops where: the request settles them, and
//! a reconciler and Stripe's webhooks settle whatever the request could not.

pub mod checkout;
pub mod consumer;
pub mod domain;
pub mod lease;
pub mod metrics;
pub mod reconciler;
pub mod routes;
pub mod settings;
pub mod settlement;
pub mod signature;
pub mod startup;
pub mod store;
pub mod stripe;
pub mod webhooks;

pub use settings::{Settings, Timing};
pub use startup::Application;

pub const SERVICE: &str = "payments";
