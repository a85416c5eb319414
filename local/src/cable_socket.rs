//! `/cable`: one WebSocket, driven through the same `$connect`, `$default` and `$disconnect`
//! handlers that run on Lambda, with the events API Gateway would send them.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use build_relay::cable::MAX_FRAME_BYTES;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::gateway::{App, GOING_AWAY, STOPPING};
use crate::peers::{Outbox, Outgoing, new_connection_id};

/// API Gateway's largest WebSocket message; frames are limited to 32 KB separately.
const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Close code for a frame over the limit (RFC 6455 "message too big").
const TOO_BIG: u16 = 1009;

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
async fn write_queued(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: UnboundedReceiver<Outgoing>,
    outbox: Outbox,
) {
    while let Some(outgoing) = queue.recv().await {
        let bytes = outgoing.bytes();
        let frame = match outgoing {
            Outgoing::Text(text) => Message::Text(text.into()),
            Outgoing::Close { code, reason } => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        };
        let closing = matches!(frame, Message::Close(_));
        let sent = sink.send(frame).await;
        outbox.sent(bytes);
        if sent.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

async fn run(app: Arc<App>, socket: WebSocket, source: SocketAddr, user_agent: Option<String>) {
    let id = new_connection_id();
    let (mut sink, mut stream) = socket.split();
    let (outbox, rx) = Outbox::new();
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

    let writer = tokio::spawn(write_queued(sink, rx, outbox.clone()));

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = outbox.dropped() => {
                writer.abort();
                break;
            }
        };
        let Some(Ok(frame)) = frame else { break };
        app.peers.touch(&id);
        let body = match frame {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if body.len() > MAX_FRAME_BYTES {
            // What API Gateway does with a frame over 32 KB: close the connection.
            tracing::info!(connection = %id, bytes = body.len(), "frame over 32 KB; closing");
            app.peers.send(
                &id,
                Outgoing::Close {
                    code: TOO_BIG,
                    reason: "frame over 32 KB",
                },
            );
            break;
        }
        app.sockets
            .message(event("$default", &id, source, Some(body)))
            .await;
    }

    app.peers.remove(&id);
    app.sockets
        .disconnect(event("$disconnect", &id, source, None))
        .await;
    // Let a queued close frame go out before the socket is dropped.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
}
