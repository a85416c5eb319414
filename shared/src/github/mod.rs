//! GitHub: the webhook payloads we read.

pub mod payloads;
