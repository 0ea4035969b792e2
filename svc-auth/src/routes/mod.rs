mod keys;
mod users;

pub use keys::KeysApi;
pub use users::UsersApi;
