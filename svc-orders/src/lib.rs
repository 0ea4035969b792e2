//! The orders service: reserves a ticket for a buyer by taking its lock, keeps the order
//! history, and ends orders on expiry, cancellation or payment.

pub mod consumer;
pub mod reservations;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
pub mod waitlist;

pub use settings::Settings;
pub use startup::Application;

pub const SERVICE: &str = "orders";
