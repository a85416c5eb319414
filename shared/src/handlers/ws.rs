//! `ws-connect`, `ws-disconnect`, `ws-message`: the WebSocket API's routes (DESIGN §5).

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use base64::Engine;

use crate::broadcast::ConnectionsApi;
use crate::cable::{self, Command};
use crate::clock::Clock;
use crate::keys;
use crate::store::{Connection, Store};

pub struct Sockets {
    pub store: Arc<dyn Store>,
    pub api: Arc<dyn ConnectionsApi>,
    pub clock: Arc<dyn Clock>,
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
    /// `$connect`: records the connection. Posting here would fail: the socket is not open
    /// until this returns.
    pub async fn connect(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let Some(id) = connection_id(&event) else {
            tracing::warn!("$connect without a connection id");
            return response(400);
        };
        let source_ip = event.request_context.identity.source_ip.clone();
        let connection = Connection::new(id, source_ip, self.clock.now());
        match self.store.put_connection(&connection).await {
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
        match self.store.delete_connection(id).await {
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
                .store
                .set_subscription(id, &identifier, false)
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

    async fn subscribe(
        &self,
        id: &str,
        identifier: &str,
        channel: Option<&str>,
        key: Option<&str>,
    ) -> Result<String, String> {
        if !cable::identifier_fits(identifier) {
            // Every frame to it would pass 32 KB: refused before it can block anything. The
            // refusal echoes the identifier, so it goes out only if it fits a frame.
            let reply = cable::reject_subscription(identifier);
            if reply.len() <= cable::MAX_FRAME_BYTES {
                let _ = self.api.post(id, &reply).await;
            }
            return Ok(format!(
                "rejected: identifier of {} bytes is over {}",
                identifier.len(),
                cable::MAX_IDENTIFIER_BYTES
            ));
        }
        let client = match (channel, key) {
            (Some(cable::CHANNEL), Some(key)) => keys::identify(self.store.as_ref(), key)
                .await
                .map_err(|e| e.to_string())?,
            _ => None,
        };
        let (reply, outcome) = match client {
            Some(name) => {
                if !self
                    .store
                    .set_subscription(id, identifier, true)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Err("subscribe from a connection that is not recorded".into());
                }
                (
                    cable::confirm_subscription(identifier),
                    format!("subscribed as {name}"),
                )
            }
            None => (
                cable::reject_subscription(identifier),
                "rejected: unknown channel or key".to_string(),
            ),
        };
        self.api
            .post(id, &reply)
            .await
            .map_err(|e| format!("{outcome}, but the reply was not sent: {e:?}"))?;
        Ok(outcome)
    }
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
