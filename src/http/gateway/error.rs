//! Error bodies as REST Proxy writes them: `{"error_code": N, "message": M}`
//! where N is the HTTP status, or the status times 100 plus a subcode.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The content type of every REST Proxy v2 control and error body.
pub const V2_JSON: &str = "application/vnd.kafka.v2+json";

/// A refused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    /// The HTTP status.
    pub status: StatusCode,
    /// REST Proxy's error code.
    pub code: u32,
    /// What went wrong, for people.
    pub message: String,
}

impl RestError {
    /// An error with its status, code and message.
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> RestError {
        RestError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: a body that is not JSON, or not the JSON asked for.
    pub fn bad_request(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, 400, message)
    }

    /// 401 40101: no or wrong credentials.
    pub fn unauthenticated(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::UNAUTHORIZED, 40101, message)
    }

    /// 403 40301: the ACLs deny it.
    pub fn forbidden(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::FORBIDDEN, 40301, message)
    }

    /// 404: no such path.
    pub fn not_found() -> RestError {
        RestError::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found")
    }

    /// 404 40401.
    pub fn topic_not_found() -> RestError {
        RestError::new(StatusCode::NOT_FOUND, 40401, "Topic not found.")
    }

    /// 404 40402.
    pub fn partition_not_found() -> RestError {
        RestError::new(StatusCode::NOT_FOUND, 40402, "Partition not found.")
    }

    /// 404 40403: unknown, expired, deleted, or another principal's instance.
    pub fn instance_not_found() -> RestError {
        RestError::new(StatusCode::NOT_FOUND, 40403, "Consumer instance not found.")
    }

    /// 409 40903: the consumer's state forbids the call (Java's IllegalStateException).
    pub fn illegal_state(message: impl std::fmt::Display) -> RestError {
        RestError::new(
            StatusCode::CONFLICT,
            40903,
            format!("Illegal state: {message}"),
        )
    }

    /// 415: a body type the gateway does not read.
    pub fn unsupported_media_type(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, 415, message)
    }

    /// 422: a well-formed body that breaks a rule.
    pub fn unprocessable(code: u32, message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500 50002: a Kafka error that retrying does not fix.
    pub fn kafka(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::INTERNAL_SERVER_ERROR, 50002, message)
    }

    /// 500 50003: a Kafka error that may pass if retried.
    pub fn retriable(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::INTERNAL_SERVER_ERROR, 50003, message)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error_code": self.code, "message": self.message});
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, V2_JSON)],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"sluice\", Bearer realm=\"sluice\""),
            );
        }
        r
    }
}

/// A 200 answer with a REST Proxy JSON body.
pub fn ok_json(body: &serde_json::Value) -> Response {
    json_with(StatusCode::OK, V2_JSON, body)
}

/// An answer with `status`, content type `content_type` and JSON `body`.
pub fn json_with(
    status: StatusCode,
    content_type: &'static str,
    body: &serde_json::Value,
) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}

/// 204, no body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
