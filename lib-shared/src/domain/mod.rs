//! What the services agree on: money, ids, lifecycle states and the ticket locks.

pub mod ids;
pub mod locks;
pub mod money;
pub mod states;
