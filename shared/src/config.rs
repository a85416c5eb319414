//! Settings from the environment (DESIGN §6), read and checked once at cold start.

use std::fmt;
use std::time::Duration;

/// A setting that is missing or unusable. Its `Display` is the one line an operator sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {name} is not set ({what})")]
    Missing {
        name: &'static str,
        what: &'static str,
    },
    #[error("configuration: {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where settings come from: the process environment in production, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment. Empty values count as unset.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.trim().is_empty())
    }
}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The repository and the rules that act on it. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// `owner/name` of the repository acted on.
    pub repository: String,
    pub source_branch: String,
    pub deploy_branch: String,
    pub bot_login: String,
    pub approval_context: String,
    /// Logins allowed to post the approval status; empty allows anyone.
    pub approval_senders: Vec<String>,
    /// CI contexts that decide a commit; empty means the first non-pending status decides.
    pub required_contexts: Vec<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            repository: "Charcoal-SE/SmokeDetector".into(),
            source_branch: "master".into(),
            deploy_branch: "deploy".into(),
            bot_login: "SmokeDetector".into(),
            approval_context: "code-review/pullapprove".into(),
            approval_senders: Vec::new(),
            required_contexts: Vec::new(),
        }
    }
}

impl RelayConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let repository = env.get("GITHUB_REPOSITORY").unwrap_or(defaults.repository);
        if repository
            .split('/')
            .filter(|part| !part.is_empty())
            .count()
            != 2
        {
            return Err(ConfigError::Invalid {
                name: "GITHUB_REPOSITORY",
                reason: format!("expected owner/name, got {repository:?}"),
            });
        }
        Ok(Self {
            repository,
            source_branch: env.get("SOURCE_BRANCH").unwrap_or(defaults.source_branch),
            deploy_branch: env.get("DEPLOY_BRANCH").unwrap_or(defaults.deploy_branch),
            bot_login: env.get("BOT_LOGIN").unwrap_or(defaults.bot_login),
            approval_context: env
                .get("APPROVAL_CONTEXT")
                .unwrap_or(defaults.approval_context),
            approval_senders: list(env.get("APPROVAL_SENDERS")),
            required_contexts: list(env.get("REQUIRED_CONTEXTS")),
        })
    }

    /// GitHub compares repository names case-insensitively.
    pub fn is_our_repository(&self, full_name: &str) -> bool {
        self.repository.eq_ignore_ascii_case(full_name)
    }
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The webhook secret and, during a rotation, the one it replaces.
#[derive(Debug, Clone)]
pub struct WebhookSecrets {
    pub current: Secret,
    pub previous: Option<Secret>,
}

impl WebhookSecrets {
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }
}

/// The DynamoDB tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub main: String,
    pub connections: String,
}

impl Tables {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            main: required(
                env,
                "TABLE_NAME",
                "the DynamoDB table for deliveries, statuses and history",
            )?,
            connections: required(
                env,
                "CONNECTIONS_TABLE",
                "the DynamoDB table of WebSocket connections",
            )?,
        })
    }
}

/// The API Gateway Management endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
pub fn websocket_endpoint(env: &dyn Source) -> Result<String, ConfigError> {
    let endpoint = required(
        env,
        "WEBSOCKET_ENDPOINT",
        "the @connections endpoint of the WebSocket API",
    )?;
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(ConfigError::Invalid {
            name: "WEBSOCKET_ENDPOINT",
            reason: format!("expected an http(s) URL, got {endpoint:?}"),
        });
    }
    Ok(endpoint.trim_end_matches('/').to_string())
}

/// Keepalive cadence, `PING_INTERVAL_SECONDS` (default 3).
pub fn ping_interval(env: &dyn Source) -> Result<Duration, ConfigError> {
    match env.get("PING_INTERVAL_SECONDS") {
        None => Ok(Duration::from_secs(3)),
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(secs) if (1..=60).contains(&secs) => Ok(Duration::from_secs(secs)),
            _ => Err(ConfigError::Invalid {
                name: "PING_INTERVAL_SECONDS",
                reason: format!("expected whole seconds from 1 to 60, got {raw:?}"),
            }),
        },
    }
}

/// How long one scheduled keepalive run pings, `KEEPALIVE_WINDOW_SECONDS` (default 60: the
/// schedule runs every minute and the next run takes over).
pub fn keepalive_window(env: &dyn Source) -> Result<Duration, ConfigError> {
    match env.get("KEEPALIVE_WINDOW_SECONDS") {
        None => Ok(Duration::from_secs(60)),
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(secs) if (1..=840).contains(&secs) => Ok(Duration::from_secs(secs)),
            _ => Err(ConfigError::Invalid {
                name: "KEEPALIVE_WINDOW_SECONDS",
                reason: format!("expected whole seconds from 1 to 840, got {raw:?}"),
            }),
        },
    }
}

fn required(
    env: &dyn Source,
    name: &'static str,
    what: &'static str,
) -> Result<String, ConfigError> {
    env.get(name).ok_or(ConfigError::Missing { name, what })
}

/// Stops the process with the one line that names the problem. For `main` at cold start.
pub fn or_exit<T>(result: Result<T, ConfigError>) -> T {
    result.unwrap_or_else(|error| {
        eprintln!("{error}");
        std::process::exit(78)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn defaults_match_the_design() {
        let config = RelayConfig::from_source(&env(&[])).unwrap();
        assert_eq!(config, RelayConfig::default());
        assert_eq!(config.repository, "Charcoal-SE/SmokeDetector");
        assert_eq!(config.deploy_branch, "deploy");
    }

    #[test]
    fn lists_are_comma_separated_and_trimmed() {
        let config = RelayConfig::from_source(&env(&[
            ("REQUIRED_CONTEXTS", " ci/circleci , build ,,"),
            ("APPROVAL_SENDERS", "pullapprove[bot]"),
        ]))
        .unwrap();
        assert_eq!(config.required_contexts, ["ci/circleci", "build"]);
        assert_eq!(config.approval_senders, ["pullapprove[bot]"]);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let error = Tables::from_source(&env(&[("TABLE_NAME", " "), ("CONNECTIONS_TABLE", "c")]))
            .unwrap_err();
        assert!(error.to_string().contains("TABLE_NAME"));
    }

    #[test]
    fn bad_values_are_rejected_with_the_reason() {
        assert!(RelayConfig::from_source(&env(&[("GITHUB_REPOSITORY", "no-slash")])).is_err());
        assert!(ping_interval(&env(&[("PING_INTERVAL_SECONDS", "0")])).is_err());
        assert_eq!(
            ping_interval(&env(&[("PING_INTERVAL_SECONDS", "5")])).unwrap(),
            Duration::from_secs(5)
        );
        assert!(websocket_endpoint(&env(&[("WEBSOCKET_ENDPOINT", "wss://x")])).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let secrets = WebhookSecrets {
            current: Secret::new("hunter2"),
            previous: Some(Secret::new("hunter1")),
        };
        assert!(!format!("{secrets:?}").contains("hunter"));
    }
}
