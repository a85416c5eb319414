//! Who may read the status page: an operator token (`STATUS_TOKEN`) as a bearer header, or
//! a cookie set by visiting `/status?token=...` once; with `STATUS_PUBLIC=true` anyone gets
//! a read-only view without key names.

use http::HeaderMap;

use crate::config::Secret;
use crate::keys;

/// The cookie that carries the token after `?token=`.
pub const COOKIE: &str = "relay_status";

/// The page's access settings.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `STATUS_TOKEN`: the operators' token; `None`: no operator view.
    pub token: Option<Secret>,
    /// `STATUS_PUBLIC`: anyone may see the page, without key names.
    pub public: bool,
}

/// What a request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything.
    Operator,
    /// The public view (no key names).
    Public,
    /// The token came as `?token=`: set the cookie and send the browser back to the page
    /// without it (so the token leaves the address bar and the history).
    SetCookie(String),
    /// 401.
    Denied,
}

impl Access {
    /// Decides for a request with `headers` and the query `token`, if any.
    pub fn check(&self, headers: &HeaderMap, query_token: Option<&str>) -> Verdict {
        let Some(token) = &self.token else {
            return self.fallback();
        };
        let matches = |given: &str| keys::hash(given) == keys::hash(token.expose());
        if let Some(given) = query_token {
            return match matches(given) {
                true => Verdict::SetCookie(cookie(given, over_https(headers))),
                false => self.fallback(),
            };
        }
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")))
            .next();
        match bearer.or(cookie) {
            Some(given) if matches(given) => Verdict::Operator,
            _ => self.fallback(),
        }
    }

    fn fallback(&self) -> Verdict {
        match self.public {
            true => Verdict::Public,
            false => Verdict::Denied,
        }
    }
}

/// Whether the request came over HTTPS, as the proxy in front says (API Gateway always
/// does); relay-local serves plain HTTP, where a `Secure` cookie would not be kept.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value for `token`: scripts can't read it, other sites don't send it,
/// HTTPS only where the page is served over HTTPS; a week long.
fn cookie(token: &str, secure: bool) -> String {
    let secure = if secure { " Secure;" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly;{secure} SameSite=Strict; Max-Age=604800")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(public: bool) -> Access {
        Access {
            token: Some(Secret::new("s3cret-token")),
            public,
        }
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_token_opens_the_operator_view_by_header_or_cookie() {
        let a = access(false);
        assert_eq!(
            a.check(&with("authorization", "Bearer s3cret-token"), None),
            Verdict::Operator
        );
        assert_eq!(
            a.check(&with("cookie", "x=1; relay_status=s3cret-token"), None),
            Verdict::Operator
        );
        assert_eq!(
            a.check(&with("authorization", "Bearer wrong"), None),
            Verdict::Denied
        );
        assert_eq!(a.check(&HeaderMap::new(), None), Verdict::Denied);
    }

    #[test]
    fn a_query_token_sets_the_cookie_once() {
        let a = access(false);
        let Verdict::SetCookie(cookie) = a.check(&HeaderMap::new(), Some("s3cret-token")) else {
            panic!("a cookie is set");
        };
        assert!(cookie.starts_with("relay_status=s3cret-token;"), "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
        let Verdict::SetCookie(cookie) =
            a.check(&with("x-forwarded-proto", "https"), Some("s3cret-token"))
        else {
            panic!("a cookie is set");
        };
        assert!(cookie.contains("; Secure;"), "{cookie}");
        assert_eq!(a.check(&HeaderMap::new(), Some("nope")), Verdict::Denied);
    }

    #[test]
    fn public_pages_need_no_token_and_a_token_still_opens_more() {
        let a = access(true);
        assert_eq!(a.check(&HeaderMap::new(), None), Verdict::Public);
        assert_eq!(
            a.check(&with("authorization", "Bearer s3cret-token"), None),
            Verdict::Operator
        );
        let open = Access {
            token: None,
            public: false,
        };
        assert_eq!(open.check(&HeaderMap::new(), None), Verdict::Denied);
    }
}
