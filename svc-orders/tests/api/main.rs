mod cancel;
mod concurrency;
mod create;
mod events;
mod faults;
mod flow;
mod helpers;
mod history;
