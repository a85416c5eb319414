//! Bounded retries for GitHub calls. GitHub waits 10 s for our answer, so a call gets a few
//! quick retries and gives up when GitHub asks for a longer wait than the budget allows;
//! the delivery then fails with a 5xx and can be redelivered.

use std::future::Future;
use std::time::{Duration, Instant};

use super::GitHubError;

/// How GitHub calls that are safe to repeat are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Calls in all, the first included.
    pub attempts: u32,
    /// The wait before the second call; doubled after each.
    pub first_backoff: Duration,
    /// Total time the retries may spend waiting.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            first_backoff: Duration::from_millis(250),
            budget: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// Runs `call` until it succeeds, fails for good, or the attempts or budget run out.
    /// Only for calls that are safe to repeat.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, GitHubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GitHubError>>,
    {
        let started = Instant::now();
        let mut backoff = self.first_backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) if !error.is_transient() || attempt >= self.attempts => {
                    return Err(error);
                }
                Err(error) => {
                    let wait = error.retry_after.unwrap_or(backoff);
                    if started.elapsed() + wait > self.budget {
                        return Err(error);
                    }
                    tracing::warn!(call = what, attempt, wait_ms = wait.as_millis() as u64, %error, "retrying GitHub call");
                    tokio::time::sleep(wait).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn error(status: u16, retry_after: Option<u64>) -> GitHubError {
        GitHubError {
            status: Some(StatusCode::from_u16(status).unwrap()),
            message: "x".into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            budget: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_given_up() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = quick()
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(error(502, None))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let _ = quick()
            .run::<(), _, _>("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(error(422, None))
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_wait_longer_than_the_budget_gives_up_at_once() {
        let calls = AtomicU32::new(0);
        let _ = quick()
            .run::<(), _, _>("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(error(403, Some(60)))
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn what_counts_as_transient() {
        assert!(error(500, None).is_transient());
        assert!(error(429, None).is_transient());
        assert!(error(403, Some(1)).is_transient());
        assert!(
            !error(403, None).is_transient(),
            "a plain 403 is a permission problem"
        );
        assert!(!error(404, None).is_transient());
        assert!(
            GitHubError {
                status: None,
                message: "refused".into(),
                retry_after: None
            }
            .is_transient()
        );
    }
}
