mod cache;
mod create;
mod events;
mod faults;
mod helpers;
mod list;
mod locks;
mod update;
