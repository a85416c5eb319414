//! The HTTP answer to a webhook delivery: a status code and one plain line saying why.

use http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub reason: String,
}

impl Answer {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
    pub fn ok(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::OK, reason)
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason)
    }

    /// The body as sent: the reason and a newline.
    pub fn body(&self) -> String {
        format!("{}\n", self.reason)
    }

    pub fn into_http(self) -> http::Response<String> {
        http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(self.body())
            .expect("a status code and a static header always build a response")
    }
}
