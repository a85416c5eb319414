//! `/cable`: one WebSocket, driven through the same `$connect`, `$default` and `$disconnect`
//! handlers that run on Lambda, with the events API Gateway would send them.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use build_relay::cable::MAX_FRAME_BYTES;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::time::{Duration, Instant};

use crate::app::{App, GOING_AWAY, STOPPING};
use crate::peers::{Outbox, Outgoing, Queue, new_connection_id};

/// API Gateway's largest WebSocket message; frames are limited to 32 KB separately.
const MAX_MESSAGE_BYTES: usize = 128 * 1024;

pub async fn upgrade(
    State(app): State<Arc<App>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if app.deliveries.stopping() {
        return (
            http::StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::RETRY_AFTER, "1")],
            "relay-local is stopping; connect again in a moment\n",
        )
            .into_response();
    }
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(app, socket, source, user_agent))
}

fn event(
    route: &str,
    id: &str,
    source: SocketAddr,
    body: Option<String>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.request_context.route_key = Some(route.to_string());
    event.request_context.event_type = Some(
        match route {
            "$connect" => "CONNECT",
            "$disconnect" => "DISCONNECT",
            _ => "MESSAGE",
        }
        .to_string(),
    );
    event.request_context.connection_id = Some(id.to_string());
    event.request_context.identity.source_ip = Some(source.ip().to_string());
    event.body = body;
    event
}

/// Sends what is queued for one client, in order, until the queue ends or a close frame
/// went out; then closes the socket.
async fn write_queued(mut sink: SplitSink<WebSocket, Message>, mut queue: Queue) {
    while let Some(outgoing) = queue.next().await {
        let bytes = outgoing.bytes();
        let frame = match outgoing {
            Outgoing::Text(text) => Message::Text(text.into()),
            Outgoing::Ping => Message::Ping(Default::default()),
            Outgoing::Close { code, reason } => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        };
        let closing = matches!(frame, Message::Close(_));
        let sent = sink.send(frame).await;
        queue.sent(bytes);
        if sent.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Why a socket's reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client closed it, or its connection ended.
    Left,
    /// The gateway closes it: the close frame's code, and why (also the count's name).
    Closed { code: u16, why: &'static str },
}

impl Ending {
    const fn closed(code: u16, why: &'static str) -> Self {
        Self::Closed { code, why }
    }

    /// What a read error means: RFC 6455 fails the connection on a protocol violation
    /// (1002), on text that is not UTF-8 (1007) and on a message over the limit (1009).
    fn from_read_error(error: axum::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as WsError;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        match error.into_inner().downcast::<WsError>().map(|e| *e) {
            Ok(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => Self::Left,
            Ok(WsError::Protocol(_)) => Self::closed(PROTOCOL_ERROR, "protocol error"),
            Ok(WsError::Utf8(_)) => Self::closed(INVALID_DATA, "text frame not UTF-8"),
            Ok(WsError::Capacity(_)) => Self::closed(TOO_BIG, "message over 128 KB"),
            _ => Self::Left,
        }
    }
}

/// RFC 6455's close codes.
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_DATA: u16 = 1007;
const POLICY_VIOLATION: u16 = 1008;
/// "Message too big": a frame over 32 KB (what API Gateway closes for), or a message over
/// 128 KB.
const TOO_BIG: u16 = 1009;

async fn run(app: Arc<App>, socket: WebSocket, source: SocketAddr, user_agent: Option<String>) {
    let id = new_connection_id();
    let (mut sink, mut stream) = socket.split();
    let (outbox, queue) = Outbox::new();
    app.peers.add(&id, outbox.clone(), source, user_agent);
    // Upgraded just as shutdown began, after its close frames went out: close this one too.
    // (Added before the check, so that one or the other always sees it.)
    if app.deliveries.stopping() {
        app.peers.remove(&id);
        let going_away = CloseFrame {
            code: GOING_AWAY,
            reason: STOPPING.into(),
        };
        let _ = sink.send(Message::Close(Some(going_away))).await;
        return;
    }

    let connected = app
        .sockets
        .connect(event("$connect", &id, source, None))
        .await;
    if connected.status_code != 200 {
        app.peers.remove(&id);
        let _ = sink.send(Message::Close(None)).await;
        return;
    }

    let mut writer = tokio::spawn(write_queued(sink, queue));
    let ending = read_frames(&app, &id, source, &mut stream, &outbox).await;
    if let Ending::Closed { code, why } = ending {
        let count = app.peers.count_closure(why);
        tracing::info!(connection = %id, code, why, closed_so_far = count, "closing socket");
        app.peers.send(&id, Outgoing::Close { code, reason: why });
    }
    // The connection list and this reader let go of the outbox: the writer sends what is
    // queued (the close frame last), closes, and ends.
    app.peers.remove(&id);
    drop(outbox);
    app.sockets
        .disconnect(event("$disconnect", &id, source, None))
        .await;
    // A client that does not read would hold the writer at its send for ever.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Hands each frame of one socket to `$default` until the client leaves or the socket must
/// be closed: a protocol error, a frame over 32 KB, a client that does not read what it is
/// sent, no subscription in time, or silence past the idle bound.
async fn read_frames(
    app: &App,
    id: &str,
    source: SocketAddr,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
) -> Ending {
    let limits = app.socket_limits;
    let started = Instant::now();
    let mut pings = tokio::time::interval_at(started + limits.ping_every, limits.ping_every);
    let subscribe_by = tokio::time::sleep_until(started + limits.subscribe_within);
    tokio::pin!(subscribe_by);
    let mut awaiting_subscription = true;
    let mut heard = started;
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = outbox.dropped() => {
                return Ending::closed(POLICY_VIOLATION, "client does not read");
            }
            () = &mut subscribe_by, if awaiting_subscription => {
                if !app.peers.subscribed(id) {
                    return Ending::closed(POLICY_VIOLATION, "no subscription in time");
                }
                awaiting_subscription = false;
                continue;
            }
            _ = pings.tick() => {
                if heard.elapsed() >= limits.idle_after {
                    return Ending::closed(POLICY_VIOLATION, "no answer to pings");
                }
                app.peers.send(id, Outgoing::Ping);
                continue;
            }
        };
        let frame = match frame {
            None => return Ending::Left,
            Some(Err(error)) => return Ending::from_read_error(error),
            Some(Ok(frame)) => frame,
        };
        heard = Instant::now();
        app.peers.touch(id);
        let body = match frame {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => return Ending::Left,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if body.len() > MAX_FRAME_BYTES {
            // What API Gateway does with a frame over 32 KB.
            return Ending::closed(TOO_BIG, "frame over 32 KB");
        }
        app.sockets
            .message(event("$default", id, source, Some(body)))
            .await;
    }
}
