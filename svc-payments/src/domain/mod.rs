mod status;

pub use status::PaymentStatus;
