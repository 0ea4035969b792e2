//! The payments service: charges an order through one Stripe PaymentIntent while the
//! order still holds its ticket, turns the hold into a sale, and refunds a charge whose
//! reservation was lost meanwhile.

pub mod checkout;
pub mod consumer;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
pub mod stripe;

pub use settings::Settings;
pub use startup::Application;

pub const SERVICE: &str = "payments";
