//! relay-local: run build-relay on one machine, or manage its client keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use build_relay::config::{
    self, BridgeConfig, ProcessEnv, RelayConfig, Secret, Tables, WebhookSecrets,
};

use build_relay::broadcast::{Broadcaster, ManagementApi};
use build_relay::github::GitHub;
use build_relay::github::dry_run::DryRun;
use build_relay::github::octocrab_client::OctocrabGitHub;
use build_relay::github::retry::RetryPolicy;
use build_relay::notify::{Notifier, RecordingNotifier};
use build_relay::overview::access::Access;
use build_relay::relay::Relay;
use build_relay::secrets::{self, SecretReader};
use build_relay::store::Store;
use build_relay::store::dynamodb::{DynamoStore, create_tables};
use build_relay::store::embedded::EmbeddedStore;
use build_relay::{keys, logging};
use clap::{Args, Parser, Subcommand};
use relay_local::{Gateway, GatewayOptions};

/// build-relay on one machine: GitHub webhooks in, ActionCable frames out to SmokeDetector,
/// with the same handler code as the Lambda functions. No AWS account, no Docker.
#[derive(Parser)]
#[command(name = "relay-local", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the webhook routes, the WebSocket endpoint (/cable) and @connections.
    ///
    /// Settings come from the environment as on Lambda (GITHUB_REPOSITORY, DEPLOY_BRANCH,
    /// REQUIRED_CONTEXTS, PING_INTERVAL_SECONDS, REPLAY_WINDOW_SECONDS, ...). GitHub calls go
    /// to GITHUB_API_URL with GITHUB_TOKEN (or GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY,
    /// GITHUB_APP_INSTALLATION_ID); without credentials it runs dry and logs the writes it
    /// would make.
    ///
    /// With METASMOKE_WS_URL and METASMOKE_KEY set, it also subscribes to metasmoke's
    /// SmokeDetectorChannel and forwards its frames to every client, except the keys in
    /// METASMOKE_BRIDGE_SKIP (default commit_status,deploy_updated); METASMOKE_ORIGIN sets
    /// the Origin header. Logs are JSON lines on stdout. SIGTERM or Ctrl-C stops it
    /// gracefully.
    ///
    /// WebSocket clients that break the protocol are closed (1002, 1007 for text that is not
    /// UTF-8, 1009 for a frame over 32 KB); so are sockets with no subscription
    /// WS_SUBSCRIBE_SECONDS (default 30) after connecting and sockets silent, pongs
    /// included, for WS_IDLE_SECONDS (default 75; pinged every WS_PING_SECONDS, 30).
    ///
    /// A reconcile pass runs at start and every RECONCILE_SECONDS (default 300; 0 turns it
    /// off), with stall alerts after STALL_ALERT_MINUTES (default 15).
    ///
    /// GET /status and /status.json show the chain at a glance to whoever has STATUS_TOKEN
    /// (a bearer header, or /status?token=... once); STATUS_PUBLIC=true opens a view without
    /// key names to anyone.
    Serve(ServeArgs),
    /// Run one reconcile pass and print its report as JSON: heal what lost webhooks left
    /// behind (deploy behind master, a deploy head without a verdict, an approved bot PR
    /// not merged) and raise or clear stall alerts.
    ///
    /// Settings as for serve, plus WEBSOCKET_ENDPOINT: the @connections API the messages
    /// go to (API Gateway's, with --dynamodb and the stack's tables; or a running
    /// relay-local serve's, http://127.0.0.1:3000, whose store this must then share:
    /// --dynamodb, since two processes cannot share a --state file). GitHub as for serve.
    ///
    /// A pass is skipped while another holds the pass lease in the store (the scheduled
    /// function's, or serve's); the report says so.
    Reconcile {
        #[command(flatten)]
        store: StoreArgs,
        /// Print what a pass would do (moves, verdicts, merges, alerts) and do none of it:
        /// GitHub and the store are only read, nothing is sent, WEBSOCKET_ENDPOINT is not
        /// needed, and no lease is taken.
        #[arg(long)]
        dry_run: bool,
    },
    /// Start a gateway, subscribe a client as SmokeDetector does, replay signed deliveries,
    /// and print what the client receives. Needs nothing set up.
    Demo {
        /// Address to listen on; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Add, list and revoke the client keys Smokey instances subscribe with.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Tell what the relay recorded for a pull request, for deploy or for a commit, as
    /// plain sentences with times (UTC): a summary, then each recorded event.
    ///
    /// Reads the records of a running or stopped relay: --state FILE (relay-local's) or
    /// --dynamodb (TABLE_NAME, CONNECTIONS_TABLE, as deployed). Changes nothing.
    Why {
        #[command(subcommand)]
        what: WhyWhat,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum WhyWhat {
    /// A pull request: its events, its approval and merge, the branch, then deploy and CI
    /// for the merge commit.
    Pr { number: u64 },
    /// Deploy: where it is, since when, its verdict, and its recent moves and reports.
    Deploy,
    /// A commit: its CI results, whether deploy was moved there, its verdict.
    Commit { sha: String },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RELAY_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The secret GitHub signs deliveries with (as configured on the webhook).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: String,
    /// The previous secret, still accepted while a rotation is under way.
    #[arg(long, env = "WEBHOOK_SECRET_PREVIOUS", hide_env_values = true)]
    webhook_secret_previous: Option<String>,
    /// Client keys to accept, as name:key,name:key (in addition to stored ones).
    #[arg(
        long,
        env = "RELAY_CLIENT_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    client_keys: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct StoreArgs {
    /// Keep the embedded store in this JSON file (default: in memory only).
    #[arg(long, global = true, conflicts_with = "dynamodb")]
    state: Option<PathBuf>,
    /// Use DynamoDB (TABLE_NAME, CONNECTIONS_TABLE and the AWS SDK's usual settings).
    /// Implied when AWS_ENDPOINT_URL_DYNAMODB is set.
    #[arg(long, global = true)]
    dynamodb: bool,
    /// With DynamoDB: create the tables first if they do not exist (for local servers).
    #[arg(long, global = true, requires = "dynamodb")]
    create_tables: bool,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key for NAME and print it once; only its hash is stored.
    ///
    /// With --stdin, register an existing key instead (a Smokey's metasmoke_key, which it
    /// keeps): it is read from standard input, so it stays out of shell history, and
    /// nothing is printed.
    Add {
        name: String,
        /// Read the key from standard input (one line) instead of generating one.
        #[arg(long)]
        stdin: bool,
    },
    /// List key names and when they were created.
    List,
    /// Remove the key called NAME.
    Revoke { name: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo { listen } => relay_local::demo::run(listen).await,
        Command::Keys { action, store } => manage_keys(action, store).await,
        Command::Reconcile { store, dry_run } => reconcile_once(store, dry_run).await,
        Command::Why { what, store } => why(what, store).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relay-local: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    logging::init();
    let relay = RelayConfig::from_source(&ProcessEnv).map_err(|e| e.to_string())?;
    let ping_interval = config::ping_interval(&ProcessEnv).map_err(|e| e.to_string())?;
    let client_keys = args
        .client_keys
        .iter()
        .map(|pair| match pair.split_once(':') {
            Some((name, key)) => Ok((name.trim().to_string(), key.trim().to_string())),
            None => Err("RELAY_CLIENT_KEYS takes name:key pairs separated by commas".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let replay_window = config::replay_window(&ProcessEnv).map_err(|e| e.to_string())?;
    let bridge = bridge().await?;
    let store = open_store(&args.store).await?;
    let github = github(&relay).await?;
    let status_access = status_access().await?;
    let running = Gateway::start(GatewayOptions {
        listen: args.listen,
        store,
        relay,
        secrets: WebhookSecrets {
            current: Secret::new(args.webhook_secret),
            previous: args.webhook_secret_previous.map(Secret::new),
        },
        ping_interval,
        socket_limits: config::socket_limits(&ProcessEnv).map_err(|e| e.to_string())?,
        client_keys,
        github,
        replay_window,
        bridge,
        bridge_timings: Default::default(),
        post_latency: Duration::ZERO,
        reconcile_interval: config::reconcile_interval(&ProcessEnv).map_err(|e| e.to_string())?,
        stall_after_seconds: config::stall_alert(&ProcessEnv).map_err(|e| e.to_string())?,
        status_access: status_access.clone(),
    })
    .await
    .map_err(|e| e.to_string())?;
    eprintln!(
        "relay-local: webhooks at {}/github/..., Smokey's metasmoke_ws_host = {}",
        running.url(),
        running.cable_url()
    );
    let page = match (&status_access.token, status_access.public) {
        (_, true) => "open to anyone (STATUS_PUBLIC), the token shows key names",
        (Some(_), false) => "with STATUS_TOKEN as a bearer, or ?token= once",
        (None, false) => "401 until STATUS_TOKEN or STATUS_PUBLIC=true is set",
    };
    eprintln!(
        "relay-local: status page at {}/status: {page}",
        running.url()
    );
    running.until_interrupted().await.map_err(|e| e.to_string())
}

/// One reconcile pass against the chosen store, its messages posted to WEBSOCKET_ENDPOINT;
/// or, `dry_run`, what it would do.
async fn reconcile_once(args: StoreArgs, dry_run: bool) -> Result<(), String> {
    logging::init();
    let relay = RelayConfig::from_source(&ProcessEnv).map_err(|e| e.to_string())?;
    let stall_after_seconds = config::stall_alert(&ProcessEnv).map_err(|e| e.to_string())?;
    let endpoint = match dry_run {
        true => None,
        false => Some(config::websocket_endpoint(&ProcessEnv).map_err(|e| {
            format!(
                "{e}: the @connections API the pass's messages go to (API Gateway's, or a \
                 running relay-local serve's, e.g. http://127.0.0.1:3000); --dry-run needs none"
            )
        })?),
    };
    let store = open_store(&args).await?;
    let clock = build_relay::clock::system();
    let (github, notifier): (Arc<dyn GitHub>, Arc<dyn Notifier>) = match endpoint {
        // Nothing is written in a dry run; GitHub's writes would be logged, not made.
        None => (
            Arc::new(DryRun::new(github(&relay).await?)),
            Arc::new(RecordingNotifier::default()),
        ),
        Some(endpoint) => {
            let api = match endpoint.starts_with("http://127.0.0.1")
                || endpoint.starts_with("http://localhost")
            {
                true => ManagementApi::local(&endpoint),
                false => ManagementApi::new(&sdk_config().await, &endpoint),
            };
            let broadcaster =
                Broadcaster::new(Arc::clone(&store), Arc::new(api), Arc::clone(&clock));
            (github(&relay).await?, Arc::new(broadcaster))
        }
    };
    let relay = Relay {
        config: relay,
        secrets: WebhookSecrets::none(),
        store,
        notifier,
        clock,
        retry: RetryPolicy::default(),
    };
    let reconcile = relay.reconcile(github, stall_after_seconds);
    let report = match dry_run {
        true => reconcile.dry_run().await,
        false => reconcile.pass().await,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("a report serialises")
    );
    match report.skipped {
        Some(reason) if reason.starts_with("stopped") => Err(reason),
        _ => Ok(()),
    }
}

/// Prints the trail asked for.
async fn why(what: WhyWhat, args: StoreArgs) -> Result<(), String> {
    let dynamodb = args.dynamodb || std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some();
    if args.state.is_none() && !dynamodb {
        return Err(
            "why reads the relay's records: give --state FILE (relay-local's) or --dynamodb".into(),
        );
    }
    let store = open_store(&args).await?;
    let trail = match what {
        WhyWhat::Pr { number } => build_relay::why::pull(store.as_ref(), number).await,
        WhyWhat::Deploy => build_relay::why::deploy(store.as_ref()).await,
        WhyWhat::Commit { sha } => build_relay::why::commit(store.as_ref(), &sha).await,
    }
    .map_err(|e| e.to_string())?;
    print!("{trail}");
    Ok(())
}

/// Who may read /status: STATUS_TOKEN (or the secret STATUS_TOKEN_ARN names), STATUS_PUBLIC.
async fn status_access() -> Result<Access, String> {
    let sdk = sdk_config().await;
    let token = SecretReader::new(&ProcessEnv, &sdk)
        .status_token()
        .await
        .map_err(|e| e.to_string())?;
    let public = config::status_public(&ProcessEnv).map_err(|e| e.to_string())?;
    Ok(Access { token, public })
}

/// The metasmoke bridge's settings, if METASMOKE_WS_URL is set.
async fn bridge() -> Result<Option<BridgeConfig>, String> {
    let sdk = sdk_config().await;
    let key = SecretReader::new(&ProcessEnv, &sdk)
        .metasmoke_key()
        .await
        .map_err(|e| e.to_string())?;
    let bridge = config::bridge(&ProcessEnv, key).map_err(|e| e.to_string())?;
    if let Some(bridge) = &bridge {
        eprintln!(
            "relay-local: bridging metasmoke's channel from {} (not forwarded: {})",
            bridge.url,
            if bridge.skip.is_empty() {
                "nothing".to_string()
            } else {
                bridge.skip.join(", ")
            }
        );
    }
    Ok(bridge)
}

/// GitHub through octocrab with GITHUB_TOKEN (or a GitHub App); without credentials, a dry
/// run that reads anonymously and logs the writes it would make.
async fn github(relay: &RelayConfig) -> Result<Arc<dyn GitHub>, String> {
    let sdk = sdk_config().await;
    let reader = SecretReader::new(&ProcessEnv, &sdk);
    let credentials = reader
        .github_credentials()
        .await
        .map_err(|e| e.to_string())?;
    let api_url = secrets::github_api_url(&ProcessEnv);
    let octocrab = OctocrabGitHub::new(&api_url, credentials.as_ref(), &relay.repository)
        .map_err(|e| e.to_string())?;
    if credentials.is_some() {
        return Ok(Arc::new(octocrab));
    }
    eprintln!("relay-local: no GITHUB_TOKEN: dry run, GitHub writes are logged, not made");
    Ok(Arc::new(DryRun::new(Arc::new(octocrab))))
}

/// The AWS SDK's configuration from its whole chain (profiles, SSO, credential processes:
/// this runs on an operator's machine), with the functions' timeouts.
async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(build_relay::aws::timeouts())
        .load()
        .await
}

async fn open_store(args: &StoreArgs) -> Result<Arc<dyn Store>, String> {
    let dynamodb = args.dynamodb || std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some();
    if !dynamodb {
        return Ok(match &args.state {
            Some(file) => Arc::new(EmbeddedStore::open(file).map_err(|e| e.to_string())?),
            None => Arc::new(EmbeddedStore::in_memory()),
        });
    }
    let tables = Tables::from_source(&ProcessEnv).map_err(|e| e.to_string())?;
    let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    if args.create_tables {
        create_tables(&client, &tables)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Arc::new(DynamoStore::new(client, tables)))
}

async fn manage_keys(action: KeysAction, args: StoreArgs) -> Result<(), String> {
    let persistent = args.state.is_some()
        || args.dynamodb
        || std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some();
    if !persistent {
        return Err(
            "keys needs --state FILE (the embedded store relay-local serve --state uses) \
                    or --dynamodb: an in-memory store would forget the key at once"
                .into(),
        );
    }
    let store = open_store(&args).await?;
    match action {
        KeysAction::Add { name, stdin } => {
            let key = match stdin {
                true => key_from_stdin()?,
                false => keys::generate(),
            };
            keys::add(store.as_ref(), &name, &key, build_relay::clock::now())
                .await
                .map_err(|e| e.to_string())?;
            if stdin {
                eprintln!("relay-local: registered the key from standard input as {name:?}");
            } else {
                eprintln!("relay-local: added client key {name:?}; it is shown only now:");
                println!("{key}");
            }
        }
        KeysAction::List => {
            let listed = store.client_keys().await.map_err(|e| e.to_string())?;
            if listed.is_empty() {
                eprintln!("relay-local: no client keys");
            }
            for key in listed {
                let created = chrono::DateTime::from_timestamp(key.created_at, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                println!("{}\t{created}", key.name);
            }
        }
        KeysAction::Revoke { name } => {
            if !store
                .revoke_client_key(&name)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no client key named {name:?}"));
            }
            eprintln!("relay-local: revoked client key {name:?}");
        }
    }
    Ok(())
}

/// The first line of standard input, without its line ending and surrounding blanks.
fn key_from_stdin() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
    let key = line.trim();
    if key.is_empty() {
        return Err("keys add --stdin: standard input held no key (expected one line)".into());
    }
    Ok(key.to_string())
}
