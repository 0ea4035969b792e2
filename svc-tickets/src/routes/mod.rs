mod tickets;

pub use tickets::{Ticket, TicketPage, TicketsApi};
