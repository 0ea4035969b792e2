//! The parts of the bench that tests run too: the chaos run.

pub mod chaos;
