mod tickets;

pub use tickets::{Ticket, TicketsApi, view};
