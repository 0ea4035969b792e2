mod cancel;
mod concurrency;
mod create;
mod events;
mod flow;
mod helpers;
mod history;
