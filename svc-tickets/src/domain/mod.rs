mod title;

pub use title::TicketTitle;
