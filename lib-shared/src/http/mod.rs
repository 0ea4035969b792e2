//! The HTTP edge: authentication, request bodies, the error body, request ids, the
//! in-progress cap and the operational endpoints.

pub mod auth;
pub mod body;
pub mod body_limit;
pub mod client_address;
pub mod error;
pub mod idempotency;
pub mod in_flight;
pub mod ops;
pub mod request_id;
pub mod responses;
pub mod types;
