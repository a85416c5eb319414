//! The API Gateway Management API (`/@connections/{id}`) as API Gateway answers it, so that
//! the relay's real SDK client is what posts: POST sends, GET describes, DELETE closes, and
//! an unknown or closed id is a 410 `GoneException`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use build_relay::cable::MAX_FRAME_BYTES;
use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::peers::Outgoing;

fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", error_type),
            ("content-type", "application/json"),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn gone() -> Response {
    aws_error(StatusCode::GONE, "GoneException", "")
}

pub async fn post(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    if !app.post_latency.is_zero() {
        // Tokio's timers tick in whole milliseconds (a 2 ms sleep lasts 2 to 3 ms); a thread
        // sleep adds the latency asked for.
        let latency = app.post_latency;
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(latency)).await;
    }
    if body.len() > MAX_FRAME_BYTES {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Message is over the 32 KB frame limit",
        );
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    match app.peers.send(&id, Outgoing::Text(text)) {
        true => StatusCode::OK.into_response(),
        false => gone(),
    }
}

pub async fn describe(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.peers.info(&id) {
        None => gone(),
        Some(info) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({
                "connectedAt": info.connected_at.to_rfc3339(),
                "lastActiveAt": info.last_active_at.to_rfc3339(),
                "identity": {
                    "sourceIp": info.source.ip().to_string(),
                    "userAgent": info.user_agent,
                },
            })
            .to_string(),
        )
            .into_response(),
    }
}

pub async fn close(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let normal = Outgoing::Close {
        code: 1000,
        reason: "closed through @connections",
    };
    match app.peers.send(&id, normal) {
        true => StatusCode::NO_CONTENT.into_response(),
        false => gone(),
    }
}
