//! The auth service: sign-up, sign-in, sign-out, the current user, and the public key
//! other services verify tokens with.

pub mod accounts;
pub mod credentials;
pub mod domain;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
pub mod tokens;

pub use settings::Settings;
pub use startup::Application;
