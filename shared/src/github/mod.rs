//! GitHub: the webhook payloads we read, and the REST calls we make.

pub mod api;
pub mod dry_run;
pub mod octocrab_client;
pub mod payloads;
pub mod retry;

pub use api::{Comparison, GitHub, GitHubError, PullRequest};
