mod orders;

pub use orders::{Order, OrdersApi};
