mod cache;
mod create;
mod events;
mod helpers;
mod list;
mod locks;
mod update;
