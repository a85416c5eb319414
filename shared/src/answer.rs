//! The HTTP answer to a webhook delivery: a status code and one plain line saying why.

use http::StatusCode;

/// An HTTP answer to a webhook delivery: its status and the one-line reason in its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200, 400, 401, 413, 415 or 503.
    pub status: StatusCode,
    /// What happened, for GitHub's delivery page and the log.
    pub reason: String,
}

impl Answer {
    /// An answer with any status.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
    /// 200: done, or nothing to do.
    pub fn ok(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::OK, reason)
    }
    /// 400: the payload cannot be used; a redelivery would not help.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
    /// 503: not done; a redelivery may do better.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason)
    }

    /// The body as sent: the reason and a newline.
    pub fn body(&self) -> String {
        format!("{}\n", self.reason)
    }

    /// The answer as an HTTP response, reason as plain text.
    pub fn into_http(self) -> http::Response<String> {
        http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(self.body())
            .expect("a status code and a static header always build a response")
    }
}
