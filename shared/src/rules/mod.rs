//! Decisions as plain functions: what to do with an event, given what is known. No I/O.

pub mod checks;
pub mod claim;
pub mod merge;
pub mod push;
pub mod reconcile;
pub mod status;
pub mod union;
