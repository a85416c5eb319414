//! One handler per function: delivery -> decision -> effects -> answer. The function
//! binaries and the local gateway call these and nothing else.

pub mod keepalive;
pub mod status;
pub mod webhook;
pub mod ws;
