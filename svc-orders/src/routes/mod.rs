mod orders;
mod waitlist;

pub use orders::{Order, OrdersApi};
pub use waitlist::{WaitlistApi, WaitlistEntry};
