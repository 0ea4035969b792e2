mod orders;
mod tickets;

pub use orders::*;
pub use tickets::*;

pub use lib_shared::runtime::clock::now;
