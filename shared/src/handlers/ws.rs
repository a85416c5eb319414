//! `ws-connect`, `ws-disconnect`, `ws-message`: the WebSocket API's routes (DESIGN §5).

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use base64::Engine;

use crate::broadcast::{Broadcaster, ConnectionsApi};
use crate::cable::{self, Command};
use crate::keys;
use crate::store::{Connection, Store};

/// The WebSocket API's three routes.
pub struct Sockets {
    /// Posts replies and replays through its @connections API, to connections in its store.
    pub broadcaster: Broadcaster,
    /// A resubscribing key is sent what it missed in this many seconds at most
    /// (`REPLAY_WINDOW_SECONDS`).
    pub replay_window: i64,
}

/// What a WebSocket route answers API Gateway. A non-2xx on `$connect` refuses the socket.
fn response(status: u16) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response
}

fn connection_id(event: &ApiGatewayWebsocketProxyRequest) -> Option<&str> {
    event
        .request_context
        .connection_id
        .as_deref()
        .filter(|id| !id.is_empty())
}

impl Sockets {
    fn store(&self) -> &dyn Store {
        self.broadcaster.store().as_ref()
    }

    fn api(&self) -> &dyn ConnectionsApi {
        self.broadcaster.api().as_ref()
    }

    /// `$connect`: records the connection. Posting here would fail: the socket is not open
    /// until this returns.
    pub async fn connect(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let Some(id) = connection_id(&event) else {
            tracing::warn!("$connect without a connection id");
            return response(400);
        };
        let source_ip = event.request_context.identity.source_ip.clone();
        let connection = Connection::new(id, source_ip, self.broadcaster.clock().now());
        match self.store().put_connection(&connection).await {
            Ok(()) => {
                tracing::info!(route = "$connect", connection = %id, "connected");
                response(200)
            }
            Err(e) => {
                tracing::error!(route = "$connect", connection = %id, error = %e, "could not record connection");
                response(500)
            }
        }
    }

    /// `$disconnect`: forgets the connection. Best effort on API Gateway's side, hence the
    /// TTL and the 410 cleanup as well.
    pub async fn disconnect(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let Some(id) = connection_id(&event) else {
            return response(400);
        };
        match self.store().delete_connection(id).await {
            Ok(()) => {
                tracing::info!(route = "$disconnect", connection = %id, "disconnected");
                response(200)
            }
            Err(e) => {
                tracing::error!(route = "$disconnect", connection = %id, error = %e, "could not delete connection");
                response(500)
            }
        }
    }

    /// `$default`: an ActionCable command. Junk is ignored with a 200 and a log line.
    pub async fn message(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let Some(id) = connection_id(&event) else {
            return response(400);
        };
        let frame = frame_text(&event);
        let command = match frame.as_deref() {
            Some(text) => cable::parse_command(text),
            None => Command::Ignored("frame is not UTF-8 text".into()),
        };
        let result = match command {
            Command::Subscribe {
                identifier,
                channel,
                key,
            } => {
                self.subscribe(id, &identifier, channel.as_deref(), key.as_deref())
                    .await
            }
            Command::Unsubscribe { identifier } => self
                .store()
                .unsubscribe(id, &identifier)
                .await
                .map(|_| "unsubscribed".to_string())
                .map_err(|e| e.to_string()),
            Command::Ignored(reason) => Ok(format!("ignored: {reason}")),
        };
        match result {
            Ok(outcome) => {
                tracing::info!(route = "$default", connection = %id, %outcome, "message");
                response(200)
            }
            Err(error) => {
                tracing::error!(route = "$default", connection = %id, %error, "message failed");
                response(500)
            }
        }
    }

    /// Every frame to this identifier would pass 32 KB: refused before it can block
    /// anything. The refusal echoes the identifier, so it goes out only if it fits a frame.
    async fn refuse_oversized(&self, id: &str, identifier: &str) -> String {
        let reply = cable::reject_subscription(identifier);
        if reply.len() <= cable::MAX_FRAME_BYTES {
            let _ = self.api().post(id, &reply).await;
        }
        format!(
            "rejected: identifier of {} bytes is over {}",
            identifier.len(),
            cable::MAX_IDENTIFIER_BYTES
        )
    }

    async fn subscribe(
        &self,
        id: &str,
        identifier: &str,
        channel: Option<&str>,
        key: Option<&str>,
    ) -> Result<String, String> {
        if !cable::identifier_fits(identifier) {
            return Ok(self.refuse_oversized(id, identifier).await);
        }
        let client = match (channel, key) {
            (Some(cable::CHANNEL), Some(key)) => keys::identify(self.store(), key)
                .await
                .map_err(|e| e.to_string())?,
            _ => None,
        };
        let Some(name) = client else {
            let outcome = "rejected: unknown channel or key";
            self.api()
                .post(id, &cable::reject_subscription(identifier))
                .await
                .map_err(|e| format!("{outcome}, but the reply was not sent: {e:?}"))?;
            return Ok(outcome.to_string());
        };
        let cursor = self
            .store()
            .cursor(&name)
            .await
            .map_err(|e| e.to_string())?;
        if !self
            .store()
            .subscribe(id, identifier, &name)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err("subscribe from a connection that is not recorded".into());
        }
        let outcome = format!("subscribed as {name}");
        self.api()
            .post(id, &cable::confirm_subscription(identifier))
            .await
            .map_err(|e| format!("{outcome}, but the reply was not sent: {e:?}"))?;
        // The cursor was read before subscribing and the outbox is read after: a message
        // sent in between reaches it live and may come twice; none falls between the two.
        let replay = self
            .broadcaster
            .replay(id, identifier, &name, cursor, self.replay_window)
            .await
            .map_err(|e| format!("{outcome}, but missed messages were not replayed: {e}"))?;
        Ok(match replay {
            r if r.first_subscription => {
                format!("{outcome} (the key had no replay cursor; it starts now)")
            }
            r => format!("{outcome}, {} missed message(s) replayed", r.sent),
        })
    }
}

/// The three routes of the WebSocket API, one function each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketRoute {
    /// `$connect`.
    Connect,
    /// `$disconnect`.
    Disconnect,
    /// `$default`: every frame a client sends.
    Message,
}

impl Sockets {
    /// Serves one event of `route`.
    pub async fn handle(
        &self,
        route: SocketRoute,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        match route {
            SocketRoute::Connect => self.connect(event).await,
            SocketRoute::Disconnect => self.disconnect(event).await,
            SocketRoute::Message => self.message(event).await,
        }
    }
}

/// Serves `route` on Lambda until the runtime stops.
pub async fn run_on_lambda(
    sockets: Sockets,
    route: SocketRoute,
) -> Result<(), lambda_runtime::Error> {
    let sockets = &sockets;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, lambda_runtime::Error>(sockets.handle(route, event.payload).await)
        },
    ))
    .await
}

fn frame_text(event: &ApiGatewayWebsocketProxyRequest) -> Option<String> {
    let body = event.body.clone().unwrap_or_default();
    if event.is_base64_encoded {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?;
        String::from_utf8(bytes).ok()
    } else {
        Some(body)
    }
}
