//! Settings from the environment (DESIGN §6), read and checked once at cold start.

use std::fmt;
use std::time::Duration;

use crate::domain::Person;

/// A setting that is missing or unusable. Its `Display` is the one line an operator sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is not set.
    #[error("configuration: {name} is not set ({what})")]
    Missing {
        /// The variable's name.
        name: &'static str,
        /// What it is for.
        what: &'static str,
    },
    /// A setting is set to something unusable.
    #[error("configuration: {name} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// Where settings come from: the process environment in production, a map in tests.
pub trait Source {
    /// The value of `name`, if it is set and not blank.
    fn get(&self, name: &str) -> Option<String> {
        self.get_raw(name).filter(|v| !v.trim().is_empty())
    }
    /// The value of `name` as set, blank included (for the few settings where an empty
    /// value means something).
    fn get_raw(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get_raw(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get_raw(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself, for the one place that needs it.
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
    /// `SOURCE_BRANCH`: the branch deploy follows (default `master`).
    pub source_branch: String,
    /// `DEPLOY_BRANCH`: the branch Smokeys pull (default `deploy`).
    pub deploy_branch: String,
    /// `BOT_LOGIN`: the author of pull requests that merge themselves (default `SmokeDetector`).
    pub bot_login: String,
    /// `APPROVAL_CONTEXT`: the status context that approves a pull request.
    pub approval_context: String,
    /// Logins allowed to post the approval status; empty allows anyone.
    pub approval_senders: Vec<String>,
    /// CI contexts that decide a commit; empty means the first non-pending status decides.
    pub required_contexts: Vec<String>,
    /// `MIRROR_STATUS_CONTEXT`: each verdict is also posted as a commit status of this
    /// context (for tools that read only statuses); `None` (the default) posts nothing.
    pub mirror_status_context: Option<String>,
    /// `MERGE_COMMITTER_NAME` and `MERGE_COMMITTER_EMAIL`: who commits a union merge.
    pub merge_committer: Person,
}

/// Who commits the merges the relay builds itself, unless configured.
pub const DEFAULT_MERGE_COMMITTER: (&str, &str) =
    ("build-relay", "build-relay@users.noreply.github.com");

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
            mirror_status_context: None,
            merge_committer: Person {
                name: DEFAULT_MERGE_COMMITTER.0.into(),
                email: DEFAULT_MERGE_COMMITTER.1.into(),
            },
        }
    }
}

impl RelayConfig {
    /// Reads the settings, each from its variable or its default.
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
        let required_contexts = list(env.get("REQUIRED_CONTEXTS"));
        let mirror_status_context = env
            .get("MIRROR_STATUS_CONTEXT")
            .map(|context| context.trim().to_string());
        if let Some(mirror) = &mirror_status_context
            && required_contexts.contains(mirror)
        {
            return Err(ConfigError::Invalid {
                name: "MIRROR_STATUS_CONTEXT",
                reason: format!(
                    "{mirror:?} is also in REQUIRED_CONTEXTS, but the relay's own mirrored \
                     status never decides a commit"
                ),
            });
        }
        let merge_committer = Person {
            name: env
                .get("MERGE_COMMITTER_NAME")
                .unwrap_or(defaults.merge_committer.name),
            email: env
                .get("MERGE_COMMITTER_EMAIL")
                .unwrap_or(defaults.merge_committer.email),
        };
        if !merge_committer.email.contains('@') {
            return Err(ConfigError::Invalid {
                name: "MERGE_COMMITTER_EMAIL",
                reason: format!("{:?} is not an email address", merge_committer.email),
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
            required_contexts,
            mirror_status_context,
            merge_committer,
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
    /// `WEBHOOK_SECRET`: what GitHub signs with.
    pub current: Secret,
    /// `WEBHOOK_SECRET_PREVIOUS`: still accepted while a rotation is under way.
    pub previous: Option<Secret>,
}

impl WebhookSecrets {
    /// No secret: for the parts that take no webhooks (the WebSocket routes, the keepalive,
    /// reconcile, the status page). Every delivery signed with anything is refused.
    pub fn none() -> Self {
        Self {
            current: Secret::new(""),
            previous: None,
        }
    }

    /// Every accepted secret, current first. An empty secret is never one: a signature
    /// made with an empty key proves nothing.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .filter(|secret| !secret.expose().is_empty())
    }
}

/// The DynamoDB tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// `TABLE_NAME`: the main table.
    pub main: String,
    /// `CONNECTIONS_TABLE`: the WebSocket connections.
    pub connections: String,
}

impl Tables {
    /// Reads both table names; both are required.
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
    seconds(env, "PING_INTERVAL_SECONDS", 3, 1..=60).map(Duration::from_secs)
}

/// How long one scheduled keepalive run pings, `KEEPALIVE_WINDOW_SECONDS` (default 60: the
/// schedule runs every minute and the next run takes over).
pub fn keepalive_window(env: &dyn Source) -> Result<Duration, ConfigError> {
    seconds(env, "KEEPALIVE_WINDOW_SECONDS", 60, 1..=840).map(Duration::from_secs)
}

/// How much longer than its keepalive window a scheduled run holds the metasmoke bridge,
/// `BRIDGE_OVERLAP_SECONDS` (default 15): the next run subscribes before it lets go.
pub fn bridge_overlap(env: &dyn Source) -> Result<Duration, ConfigError> {
    seconds(env, "BRIDGE_OVERLAP_SECONDS", 15, 1..=120).map(Duration::from_secs)
}

/// The longest `REPLAY_WINDOW_SECONDS`: the outbox keeps messages a little longer.
pub const MAX_REPLAY_WINDOW_SECONDS: u64 = 24 * 60 * 60;

/// How far back a resubscribing key is sent what it missed, `REPLAY_WINDOW_SECONDS`
/// (default 3600; 0 turns replay off).
pub fn replay_window(env: &dyn Source) -> Result<i64, ConfigError> {
    seconds(
        env,
        "REPLAY_WINDOW_SECONDS",
        3600,
        0..=MAX_REPLAY_WINDOW_SECONDS,
    )
    .map(|secs| secs as i64)
}

/// Whole seconds from `name`, within `range`, or `default` when unset.
pub(crate) fn seconds(
    env: &dyn Source,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    whole(env, name, default, range, "seconds")
}

/// A whole number of `unit`s within `range`, or `default` when unset.
fn whole(
    env: &dyn Source,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, ConfigError> {
    let Some(raw) = env.get(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!(
                "expected whole {unit} from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// What `relay-local`'s WebSocket endpoint tolerates of a client before it closes the
/// socket (API Gateway applies its own rules on AWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// `WS_SUBSCRIBE_SECONDS` (default 30): a socket with no confirmed ActionCable
    /// subscription this long after connecting is closed.
    pub subscribe_within: Duration,
    /// `WS_PING_SECONDS` (default 30): how often each socket is sent a WebSocket ping.
    pub ping_every: Duration,
    /// `WS_IDLE_SECONDS` (default 75): a socket that sent nothing, not even a pong, for
    /// this long is closed.
    pub idle_after: Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self {
            subscribe_within: Duration::from_secs(30),
            ping_every: Duration::from_secs(30),
            idle_after: Duration::from_secs(75),
        }
    }
}

/// The WebSocket endpoint's limits from `WS_SUBSCRIBE_SECONDS`, `WS_PING_SECONDS` and
/// `WS_IDLE_SECONDS`; the idle bound must be longer than the ping interval.
pub fn socket_limits(env: &dyn Source) -> Result<SocketLimits, ConfigError> {
    let limits = SocketLimits {
        subscribe_within: Duration::from_secs(seconds(env, "WS_SUBSCRIBE_SECONDS", 30, 1..=7200)?),
        ping_every: Duration::from_secs(seconds(env, "WS_PING_SECONDS", 30, 1..=3600)?),
        idle_after: Duration::from_secs(seconds(env, "WS_IDLE_SECONDS", 75, 2..=7200)?),
    };
    if limits.idle_after <= limits.ping_every {
        return Err(ConfigError::Invalid {
            name: "WS_IDLE_SECONDS",
            reason: format!(
                "must be longer than WS_PING_SECONDS ({} s), or every client would be \
                 closed before it could answer a ping",
                limits.ping_every.as_secs()
            ),
        });
    }
    Ok(limits)
}

/// How often `relay-local serve` runs a reconcile pass, `RECONCILE_SECONDS` (default 300;
/// 0 turns it off).
pub fn reconcile_interval(env: &dyn Source) -> Result<Duration, ConfigError> {
    seconds(env, "RECONCILE_SECONDS", 300, 0..=86_400).map(Duration::from_secs)
}

/// How long a stall lasts before its chat alert, `STALL_ALERT_MINUTES` (default 15, at
/// least 1), in seconds.
pub fn stall_alert(env: &dyn Source) -> Result<i64, ConfigError> {
    whole(env, "STALL_ALERT_MINUTES", 15, 1..=1440, "minutes").map(|minutes| minutes as i64 * 60)
}

/// Whether anyone may read the status page's public view, `STATUS_PUBLIC` (`true` or
/// `false`, default false). The operators' token is a secret (`SecretReader::status_token`).
pub fn status_public(env: &dyn Source) -> Result<bool, ConfigError> {
    match env.get("STATUS_PUBLIC").as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name: "STATUS_PUBLIC",
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

/// The keys build-relay sends itself, which the bridge does not pass on from metasmoke.
pub const BRIDGE_SKIP_DEFAULT: [&str; 2] = ["commit_status", "deploy_updated"];

/// Where and how the metasmoke bridge subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// `METASMOKE_WS_URL`, `ws://` or `wss://`.
    pub url: String,
    /// `METASMOKE_KEY` (or the secret `METASMOKE_KEY_ARN` names): the bridge's own
    /// metasmoke key.
    pub key: Secret,
    /// `METASMOKE_ORIGIN`; default the https origin of the URL's host.
    pub origin: String,
    /// `METASMOKE_BRIDGE_SKIP`: broadcasts with one of these keys are not forwarded.
    pub skip: Vec<String>,
}

/// The bridge's settings; `None` without `METASMOKE_WS_URL` (no bridge). `key` is what
/// `SecretReader::metasmoke_key` read.
pub fn bridge(env: &dyn Source, key: Option<Secret>) -> Result<Option<BridgeConfig>, ConfigError> {
    let Some(url) = env.get("METASMOKE_WS_URL") else {
        return Ok(None);
    };
    let url = url.trim().to_string();
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "METASMOKE_WS_URL",
        reason: format!("{reason}, got {url:?}"),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid("expected a ws:// or wss:// URL"))?;
    if !matches!(uri.scheme_str(), Some("ws" | "wss")) {
        return Err(invalid("expected a ws:// or wss:// URL"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("the URL has no host"))?;
    let key = key.ok_or(ConfigError::Missing {
        name: "METASMOKE_KEY",
        what: "the bridge's metasmoke key (METASMOKE_KEY, or METASMOKE_KEY_ARN), needed with \
               METASMOKE_WS_URL",
    })?;
    let skip = match env.get_raw("METASMOKE_BRIDGE_SKIP") {
        None => BRIDGE_SKIP_DEFAULT.map(String::from).to_vec(),
        Some(raw) => list(Some(raw)),
    };
    Ok(Some(BridgeConfig {
        origin: env
            .get("METASMOKE_ORIGIN")
            .unwrap_or_else(|| format!("https://{authority}")),
        url,
        key,
        skip,
    }))
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

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
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
    fn reconcile_settings_have_defaults_and_bounds() {
        assert_eq!(
            reconcile_interval(&env(&[])).unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            reconcile_interval(&env(&[("RECONCILE_SECONDS", "0")])).unwrap(),
            Duration::ZERO
        );
        assert_eq!(stall_alert(&env(&[])).unwrap(), 900);
        let zero = stall_alert(&env(&[("STALL_ALERT_MINUTES", "0")])).unwrap_err();
        assert!(zero.to_string().contains("whole minutes from 1"), "{zero}");
    }

    #[test]
    fn socket_limits_have_defaults_and_the_idle_bound_outlasts_a_ping() {
        assert_eq!(socket_limits(&env(&[])).unwrap(), SocketLimits::default());
        let set = socket_limits(&env(&[
            ("WS_SUBSCRIBE_SECONDS", "5"),
            ("WS_PING_SECONDS", "2"),
            ("WS_IDLE_SECONDS", "5"),
        ]))
        .unwrap();
        assert_eq!(set.subscribe_within, Duration::from_secs(5));
        assert_eq!(set.ping_every, Duration::from_secs(2));
        let short = socket_limits(&env(&[
            ("WS_PING_SECONDS", "60"),
            ("WS_IDLE_SECONDS", "60"),
        ]))
        .unwrap_err();
        assert!(short.to_string().contains("WS_IDLE_SECONDS"), "{short}");
    }

    #[test]
    fn the_merge_committer_has_a_default_and_needs_an_email_address() {
        let config = RelayConfig::from_source(&env(&[])).unwrap();
        assert_eq!(
            (
                config.merge_committer.name.as_str(),
                config.merge_committer.email.as_str()
            ),
            DEFAULT_MERGE_COMMITTER
        );
        let set = RelayConfig::from_source(&env(&[
            ("MERGE_COMMITTER_NAME", "Smoke Relay"),
            ("MERGE_COMMITTER_EMAIL", "relay@example.org"),
        ]))
        .unwrap();
        assert_eq!(set.merge_committer.name, "Smoke Relay");
        let bad =
            RelayConfig::from_source(&env(&[("MERGE_COMMITTER_EMAIL", "nobody")])).unwrap_err();
        assert!(bad.to_string().contains("MERGE_COMMITTER_EMAIL"), "{bad}");
    }

    #[test]
    fn the_mirror_context_is_off_when_blank_and_never_required() {
        let blank = RelayConfig::from_source(&env(&[("MIRROR_STATUS_CONTEXT", " ")])).unwrap();
        assert_eq!(blank.mirror_status_context, None);
        let set = RelayConfig::from_source(&env(&[("MIRROR_STATUS_CONTEXT", " build-relay/ci ")]))
            .unwrap();
        assert_eq!(set.mirror_status_context.as_deref(), Some("build-relay/ci"));
        let both = RelayConfig::from_source(&env(&[
            ("MIRROR_STATUS_CONTEXT", "build-relay/ci"),
            ("REQUIRED_CONTEXTS", "ci/circleci,build-relay/ci"),
        ]))
        .unwrap_err();
        assert!(both.to_string().contains("MIRROR_STATUS_CONTEXT"), "{both}");
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

    #[test]
    fn the_bridge_is_off_without_a_url_and_needs_a_key_with_one() {
        assert_eq!(bridge(&env(&[]), None).unwrap(), None);
        let url = (
            "METASMOKE_WS_URL",
            "wss://metasmoke.erwaysoftware.com/cable",
        );
        let error = bridge(&env(&[url]), None).unwrap_err();
        assert!(error.to_string().contains("METASMOKE_KEY"), "{error}");
        let key = Some(Secret::new("k"));
        let config = bridge(&env(&[url]), key.clone()).unwrap().unwrap();
        assert_eq!(config.origin, "https://metasmoke.erwaysoftware.com");
        assert_eq!(config.skip, ["commit_status", "deploy_updated"]);
        for bad in [
            "https://metasmoke.erwaysoftware.com/cable",
            "not a url",
            "ws:///cable",
        ] {
            let error = bridge(&env(&[("METASMOKE_WS_URL", bad)]), key.clone()).unwrap_err();
            assert!(
                error.to_string().contains("METASMOKE_WS_URL"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_bridge_skip_list_is_replaced_and_an_empty_one_skips_nothing() {
        let key = Some(Secret::new("k"));
        let url = ("METASMOKE_WS_URL", "ws://127.0.0.1:9000/cable");
        let with = |skip: &str| {
            let settings = env(&[url, ("METASMOKE_BRIDGE_SKIP", skip)]);
            bridge(&settings, key.clone()).unwrap().unwrap()
        };
        assert_eq!(with("fp, naa").skip, ["fp", "naa"]);
        assert!(with("").skip.is_empty());
        let config = with("fp");
        assert_eq!(config.origin, "https://127.0.0.1:9000");
        let origin = env(&[url, ("METASMOKE_ORIGIN", "https://metasmoke.example")]);
        assert_eq!(
            bridge(&origin, key).unwrap().unwrap().origin,
            "https://metasmoke.example"
        );
    }

    #[test]
    fn the_replay_window_is_bounded() {
        assert_eq!(replay_window(&env(&[])).unwrap(), 3600);
        assert_eq!(
            replay_window(&env(&[("REPLAY_WINDOW_SECONDS", "0")])).unwrap(),
            0
        );
        assert!(replay_window(&env(&[("REPLAY_WINDOW_SECONDS", "86401")])).is_err());
    }
}
