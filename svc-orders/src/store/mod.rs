mod orders;
mod tickets;
mod waitlist;

pub use orders::*;
pub use tickets::*;
pub use waitlist::*;

pub use lib_shared::runtime::clock::now;
