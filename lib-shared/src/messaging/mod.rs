//! Events between services: their types, the stream bus, the outbox that writes them with
//! the change, and the dead letters.

pub mod bus;
pub mod dead_letters;
pub mod events;
pub mod outbox;
