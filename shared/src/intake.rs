//! Webhook intake (DESIGN §3): from a raw request to a verified delivery, or the answer
//! that refuses it. Nothing here touches storage, so a refused request changes nothing.

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, StatusCode};
use sha2::Sha256;

use crate::answer::Answer;
use crate::config::WebhookSecrets;

/// Largest body accepted. GitHub caps payloads at 25 MB, but Lambda's synchronous payload
/// limit is 6 MB; a 2,048-commit push stays well under this.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// `X-Hub-Signature-256`: `sha256=` and the body's HMAC.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// `X-GitHub-Event`: the event's name.
pub const EVENT_HEADER: &str = "x-github-event";
/// `X-GitHub-Delivery`: the delivery's id, the same on a redelivery.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// A delivery whose signature checked out.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `X-GitHub-Event`, e.g. `status`.
    pub event: String,
    /// `X-GitHub-Delivery`, the idempotency key.
    pub id: String,
    /// The body as received (signed bytes, decoded from a form if need be).
    pub body: Vec<u8>,
}

/// Checks size, signature and headers, in that order.
pub fn accept(
    headers: &HeaderMap,
    body: Vec<u8>,
    secrets: &WebhookSecrets,
) -> Result<Delivery, Answer> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Payload of {} bytes is over the {MAX_BODY_BYTES}-byte limit",
                body.len()
            ),
        ));
    }
    let signature = header(headers, SIGNATURE_HEADER).ok_or_else(|| {
        Answer::new(
            StatusCode::UNAUTHORIZED,
            "Missing X-Hub-Signature-256 header",
        )
    })?;
    let signature = parse_signature(signature).ok_or_else(|| {
        Answer::new(
            StatusCode::UNAUTHORIZED,
            "Malformed X-Hub-Signature-256 header: expected sha256=<64 hex digits>",
        )
    })?;
    if !secrets
        .iter()
        .any(|secret| signature_matches(secret.expose().as_bytes(), &body, &signature))
    {
        return Err(Answer::new(
            StatusCode::UNAUTHORIZED,
            "Signature does not match",
        ));
    }
    if header(headers, "content-type").is_some_and(is_form_encoded) {
        return Err(Answer::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Form-encoded payloads are not supported: set the webhook's content type to application/json",
        ));
    }
    let event = header(headers, EVENT_HEADER)
        .ok_or_else(|| Answer::bad_request("Missing X-GitHub-Event header"))?;
    let id = header(headers, DELIVERY_HEADER)
        .filter(|id| id.len() <= 128)
        .ok_or_else(|| Answer::bad_request("Missing or overlong X-GitHub-Delivery header"))?;
    Ok(Delivery {
        event: event.to_string(),
        id: id.to_string(),
        body,
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Media types compare without regard to case (RFC 9110 §8.3.1), parameters aside.
fn is_form_encoded(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

fn parse_signature(header: &str) -> Option<Vec<u8>> {
    let hex_digits = header.strip_prefix("sha256=")?;
    let bytes = hex::decode(hex_digits).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

/// Constant-time comparison of the HMAC-SHA256 of `body` under `secret` with `expected`.
pub fn signature_matches(secret: &[u8], body: &[u8], expected: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(expected).is_ok()
}

/// The `X-Hub-Signature-256` value GitHub would send for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const VECTOR_SECRET: &str = "It's a Secret to Everybody";
    const VECTOR_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secrets(current: &str, previous: Option<&str>) -> WebhookSecrets {
        WebhookSecrets {
            current: Secret::new(current),
            previous: previous.map(Secret::new),
        }
    }

    fn headers(signature: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(signature) = signature {
            headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        }
        headers.insert(EVENT_HEADER, "status".parse().unwrap());
        headers.insert(DELIVERY_HEADER, "d-1".parse().unwrap());
        headers
    }

    #[test]
    fn github_documented_test_vector() {
        assert_eq!(
            sign(VECTOR_SECRET.as_bytes(), b"Hello, World!"),
            VECTOR_SIGNATURE
        );
        let delivery = accept(
            &headers(Some(VECTOR_SIGNATURE)),
            b"Hello, World!".to_vec(),
            &secrets(VECTOR_SECRET, None),
        )
        .unwrap();
        assert_eq!(
            (delivery.event.as_str(), delivery.id.as_str()),
            ("status", "d-1")
        );
    }

    #[test]
    fn missing_wrong_and_malformed_signatures_are_401() {
        let s = secrets(VECTOR_SECRET, None);
        let body = b"Hello, World!".to_vec();
        for signature in [
            None,
            Some("sha256=00"),
            Some("sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"),
            Some(&sign(b"another secret", &body)),
        ] {
            let answer = accept(&headers(signature), body.clone(), &s).unwrap_err();
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{signature:?}");
        }
    }

    #[test]
    fn no_secret_accepts_nothing_not_even_a_signature_with_an_empty_key() {
        let body = b"Hello, World!".to_vec();
        let signature = sign(b"", &body);
        for accepted in [WebhookSecrets::none(), secrets("", Some(""))] {
            let answer = accept(&headers(Some(&signature)), body.clone(), &accepted).unwrap_err();
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn a_tampered_body_fails() {
        let answer = accept(
            &headers(Some(VECTOR_SIGNATURE)),
            b"Hello, World?".to_vec(),
            &secrets(VECTOR_SECRET, None),
        )
        .unwrap_err();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_previous_secret_still_verifies_during_rotation() {
        let rotated = secrets("the new secret", Some(VECTOR_SECRET));
        assert!(
            accept(
                &headers(Some(VECTOR_SIGNATURE)),
                b"Hello, World!".to_vec(),
                &rotated
            )
            .is_ok()
        );
        let signed_with_new = sign(b"the new secret", b"Hello, World!");
        assert!(
            accept(
                &headers(Some(&signed_with_new)),
                b"Hello, World!".to_vec(),
                &rotated
            )
            .is_ok()
        );
    }

    #[test]
    fn oversized_bodies_are_413_before_hashing() {
        let answer = accept(
            &headers(None),
            vec![b' '; MAX_BODY_BYTES + 1],
            &secrets("s", None),
        )
        .unwrap_err();
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn missing_event_or_delivery_headers_are_400() {
        let body = b"{}".to_vec();
        let signature = sign(b"s", &body);
        for missing in [EVENT_HEADER, DELIVERY_HEADER] {
            let mut h = headers(Some(&signature));
            h.remove(missing);
            let answer = accept(&h, body.clone(), &secrets("s", None)).unwrap_err();
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{missing}");
        }
    }

    #[test]
    fn form_encoded_deliveries_are_refused_with_the_fix() {
        let body = b"payload=%7B%7D".to_vec();
        let mut h = headers(Some(&sign(b"s", &body)));
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let answer = accept(&h, body, &secrets("s", None)).unwrap_err();
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(answer.reason.contains("application/json"));
    }

    #[test]
    fn form_encoding_is_recognised_in_any_case_and_with_parameters() {
        let body = b"payload=%7B%7D".to_vec();
        for content_type in [
            "Application/X-WWW-Form-Urlencoded",
            "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8",
            " application/x-www-form-urlencoded ",
        ] {
            let mut h = headers(Some(&sign(b"s", &body)));
            h.insert("content-type", content_type.parse().unwrap());
            let answer = accept(&h, body.clone(), &secrets("s", None)).unwrap_err();
            assert_eq!(
                answer.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type}"
            );
        }
        for content_type in ["application/json", "Application/JSON; charset=utf-8"] {
            let mut h = headers(Some(&sign(b"s", &body)));
            h.insert("content-type", content_type.parse().unwrap());
            assert!(accept(&h, body.clone(), &secrets("s", None)).is_ok());
        }
    }
}
