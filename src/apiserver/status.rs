//! `metav1.Status` error answers shared by every layer of the API listener, and the rule for repeating a caller's
//! input in them.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

/// Longest piece of a caller's input (a selector, a path, a name) repeated in an error message, in bytes.
pub const MAX_ECHO_BYTES: usize = 256;

/// `input` cut to at most [`MAX_ECHO_BYTES`] (at a character boundary) with `…` appended when cut, so that an error
/// answer stays small whatever the caller sent.
pub fn echo(input: &str) -> Cow<'_, str> {
    echo_at_most(input, MAX_ECHO_BYTES)
}

/// Like [`echo`] with another limit.
pub fn echo_at_most(input: &str, max: usize) -> Cow<'_, str> {
    if input.len() <= max {
        return Cow::Borrowed(input);
    }
    let mut cut = max;
    while !input.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…", &input[..cut]))
}

/// A failure `metav1.Status` (`kind: Status`, `apiVersion: v1`) as JSON with `Content-Type: application/json`.
pub fn failure(code: StatusCode, reason: &str, message: &str, details: Option<StatusDetails>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body(code, reason, message, details),
    )
        .into_response()
}

/// The JSON text of a failure `metav1.Status`.
pub fn body(code: StatusCode, reason: &str, message: &str, details: Option<StatusDetails>) -> String {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        details,
        message: Some(message.to_owned()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        ..Default::default()
    };
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("kind".into(), "Status".into());
        object.insert("apiVersion".into(), "v1".into());
    }
    body.to_string()
}

/// The `reason` kube-apiserver gives an error code (`BadRequest` for client errors it has no name for).
pub fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        408 => "Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        c if c >= 500 => "InternalError",
        _ => "BadRequest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_cut_at_a_character_boundary() {
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(200);
        let cut = echo(&long);
        assert!(cut.len() <= MAX_ECHO_BYTES + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(echo_at_most("abcdef", 3), "abc…");
    }
}
