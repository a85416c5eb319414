//! Structured JSON logs through `tracing`: one object a line, as CloudWatch reads them.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the JSON subscriber. The filter comes from `RUST_LOG` (`level` or
/// `target=level,...`), else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`; the AWS SDK's own
/// chatter is kept at `warn` unless `RUST_LOG` says otherwise.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| Targets::from_str(&spec).ok())
        .unwrap_or_else(|| {
            let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .and_then(|l| LevelFilter::from_str(&l.to_lowercase()).ok())
                .unwrap_or(LevelFilter::INFO);
            Targets::new().with_default(level).with_targets(
                [
                    "aws_config",
                    "aws_smithy_runtime",
                    "aws_smithy_runtime_api",
                    "hyper",
                    "hyper_util",
                ]
                .map(|t| (t, LevelFilter::WARN)),
            )
        });
    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .try_init();
}
