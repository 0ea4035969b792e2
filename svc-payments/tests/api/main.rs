mod helpers;
mod journey;
mod pay;
mod races;
