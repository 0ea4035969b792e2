mod api;
mod expiry;
mod helpers;
mod replicas;
