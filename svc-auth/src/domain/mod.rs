mod email;
mod password;

pub use email::Email;
pub use password::Password;
