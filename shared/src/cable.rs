//! ActionCable frames as Smokey speaks them (DESIGN §5).

use serde::{Deserialize, Serialize};

/// The one channel Smokey subscribes to.
pub const CHANNEL: &str = "SmokeDetectorChannel";
/// API Gateway closes a connection on a frame over 32 KB; nothing we send may exceed it and
/// nothing larger from a client is read.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// The longest identifier a subscription may have, as it stands escaped in a frame. Every
/// frame to a subscription carries it, and the largest message (a trimmed `deploy_updated`)
/// leaves 1 KB of the 32 KB for it and the envelope. Smokey's is under 100 bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 768;

/// Whether frames to a subscription with this identifier can always be delivered.
pub fn identifier_fits(identifier: &str) -> bool {
    serde_json::to_string(identifier).is_ok_and(|escaped| escaped.len() <= MAX_IDENTIFIER_BYTES)
}

/// What a client's frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `identifier` is the raw JSON string; `channel` and `key` are read from it.
    Subscribe {
        /// The identifier as sent: a JSON string, echoed in every frame to the subscription.
        identifier: String,
        /// The identifier's `channel`.
        channel: Option<String>,
        /// The identifier's `key`: the client key.
        key: Option<String>,
    },
    /// Leave a subscription (Smokey never sends it).
    Unsubscribe {
        /// The identifier as sent.
        identifier: String,
    },
    /// Anything else; the reason is for the log.
    Ignored(String),
}

#[derive(Deserialize)]
struct RawCommand {
    command: Option<String>,
    identifier: Option<String>,
}

#[derive(Deserialize)]
struct RawIdentifier {
    channel: Option<String>,
    key: Option<String>,
}

/// Reads a client's frame; anything but a well-formed subscribe or unsubscribe is ignored.
pub fn parse_command(frame: &str) -> Command {
    if frame.len() > MAX_FRAME_BYTES {
        return Command::Ignored(format!("frame of {} bytes is over the limit", frame.len()));
    }
    let Ok(raw) = serde_json::from_str::<RawCommand>(frame) else {
        return Command::Ignored("not an ActionCable command".into());
    };
    let (Some(command), Some(identifier)) = (raw.command, raw.identifier) else {
        return Command::Ignored("command or identifier missing".into());
    };
    match command.as_str() {
        "subscribe" => {
            let parsed = serde_json::from_str::<RawIdentifier>(&identifier).ok();
            let (channel, key) = parsed.map(|p| (p.channel, p.key)).unwrap_or_default();
            Command::Subscribe {
                identifier,
                channel,
                key,
            }
        }
        "unsubscribe" => Command::Unsubscribe { identifier },
        other => Command::Ignored(format!("unknown command {other:?}")),
    }
}

#[derive(Serialize)]
struct Reply<'a> {
    identifier: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// `{"identifier":...,"type":"confirm_subscription"}`
pub fn confirm_subscription(identifier: &str) -> String {
    reply(identifier, "confirm_subscription")
}

/// `{"identifier":...,"type":"reject_subscription"}`
pub fn reject_subscription(identifier: &str) -> String {
    reply(identifier, "reject_subscription")
}

/// Whether `frame` is a `confirm_subscription` reply, as [`confirm_subscription`] writes it.
pub fn is_confirmation(frame: &str) -> bool {
    frame.ends_with(r#","type":"confirm_subscription"}"#)
}

fn reply(identifier: &str, kind: &str) -> String {
    serde_json::to_string(&Reply { identifier, kind }).expect("strings always serialize")
}

#[derive(Serialize)]
struct Ping {
    #[serde(rename = "type")]
    kind: &'static str,
    message: i64,
}

/// `{"type":"ping","message":<unix seconds>}`
pub fn ping(unix_seconds: i64) -> String {
    let ping = Ping {
        kind: "ping",
        message: unix_seconds,
    };
    serde_json::to_string(&ping).expect("numbers always serialize")
}

/// `{"identifier":"<identifier>","message":<message>}`, with `message` (JSON text) placed
/// byte for byte: a bridged frame reaches Smokey exactly as metasmoke wrote it.
pub fn message(identifier: &str, message: &str) -> String {
    let identifier = serde_json::to_string(identifier).expect("strings always serialize");
    format!(r#"{{"identifier":{identifier},"message":{message}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOKEY_SUBSCRIBE: &str = r#"{"command":"subscribe","identifier":"{\"channel\":\"SmokeDetectorChannel\",\"key\":\"abc\"}"}"#;

    #[test]
    fn smokeys_subscribe_frame_is_understood() {
        assert_eq!(
            parse_command(SMOKEY_SUBSCRIBE),
            Command::Subscribe {
                identifier: r#"{"channel":"SmokeDetectorChannel","key":"abc"}"#.into(),
                channel: Some(CHANNEL.into()),
                key: Some("abc".into()),
            }
        );
    }

    #[test]
    fn replies_echo_the_identifier_string() {
        let identifier = r#"{"channel":"SmokeDetectorChannel","key":"abc"}"#;
        assert_eq!(
            confirm_subscription(identifier),
            r#"{"identifier":"{\"channel\":\"SmokeDetectorChannel\",\"key\":\"abc\"}","type":"confirm_subscription"}"#
        );
        assert!(reject_subscription(identifier).ends_with(r#""type":"reject_subscription"}"#));
        assert!(is_confirmation(&confirm_subscription(identifier)));
        assert!(!is_confirmation(&reject_subscription(identifier)));
        assert_eq!(ping(1700000000), r#"{"type":"ping","message":1700000000}"#);
    }

    #[test]
    fn identifiers_that_could_crowd_out_a_message_do_not_fit() {
        let smokey = r#"{"channel":"SmokeDetectorChannel","key":"abc"}"#;
        assert!(identifier_fits(smokey));
        assert!(identifier_fits(&"k".repeat(MAX_IDENTIFIER_BYTES - 2)));
        assert!(!identifier_fits(&"k".repeat(MAX_IDENTIFIER_BYTES - 1)));
        // Escaping counts: quotes take two bytes each.
        assert!(!identifier_fits(&"\"".repeat(MAX_IDENTIFIER_BYTES / 2)));
    }

    #[test]
    fn junk_is_ignored() {
        for frame in [
            "",
            "null",
            "[1]",
            "{\"command\":\"fly\",\"identifier\":\"x\"}",
            "{\"command\":\"subscribe\"}",
        ] {
            assert!(
                matches!(parse_command(frame), Command::Ignored(_)),
                "{frame}"
            );
        }
        let giant = format!(
            "{{\"command\":\"subscribe\",\"identifier\":\"{}\"}}",
            "x".repeat(MAX_FRAME_BYTES)
        );
        assert!(matches!(parse_command(&giant), Command::Ignored(_)));
    }

    #[test]
    fn a_subscribe_with_an_unreadable_identifier_has_no_channel() {
        let Command::Subscribe { channel, key, .. } =
            parse_command(r#"{"command":"subscribe","identifier":"not json"}"#)
        else {
            panic!("still a subscribe");
        };
        assert_eq!((channel, key), (None, None));
    }
}
