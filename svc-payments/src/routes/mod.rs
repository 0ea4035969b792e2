mod payments;

pub use payments::{Payment, PaymentsApi, view};
