//! The server's error answers, in OpenAI's shape: a status and
//! `{"error": {"message", "type", "param", "code"}}`, for every refusal a handler, an extractor or
//! the router makes.

use axum::extract::rejection::JsonRejection;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::CliError;

/// A refused or failed request, as the server answers it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, for a person.
    pub message: String,
    /// OpenAI's error type: `invalid_request_error`, `not_found_error`, `rate_limit_error`,
    /// `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code: `model_not_found`, `context_length_exceeded`, `queue_full`, ...
    pub code: Option<&'static str>,
}

impl ApiError {
    /// An error of `status` and `kind` with `message`, no field and no code.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }

    /// A 400 naming the request field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).param(param)
    }

    /// The request names a model this server does not serve (404, `model_not_found`).
    pub fn unknown_model(asked: &str, served: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{asked}` does not exist; this server serves `{served}`"),
        )
        .param("model")
        .code("model_not_found")
    }

    /// Every generation slot is busy and the waiting queue is full (429, `queue_full`).
    pub fn queue_full(running: usize, waiting: usize) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "the server is busy: {running} generations running and {waiting} waiting, the most it takes \
                 (--max-concurrent, --max-queue); retry later"
            ),
        )
        .code("queue_full")
    }

    /// The server is stopping and takes no more work (503, `shutting_down`).
    pub fn shutting_down() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the server is shutting down")
            .code("shutting_down")
    }

    /// Something failed on the server's side (500).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The same error naming the field `param`.
    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// The same error with the code `code`.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The error object OpenAI puts under `"error"`, also sent as a server-sent event when a
    /// stream fails after it began.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// A library error met while reading a prompt or generating: the caller's fault (a bad
    /// option, a token id outside the vocabulary, an input too large for memory) is a 400, the
    /// rest a 500.
    pub fn from_library(e: &focusllm::Error) -> Self {
        use focusllm::Error as E;
        match e {
            E::InvalidOption { name, .. } => ApiError::invalid(name, e.to_string()),
            E::EmptyInput { .. } | E::TokenOutOfRange { .. } | E::ChatTemplate { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", e.to_string())
            }
            E::OutOfMemory { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", e.to_string()).code("out_of_memory")
            }
            E::Cancelled => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the generation was cancelled")
                    .code("cancelled")
            }
            _ => ApiError::internal(e.to_string()),
        }
    }

    /// A refusal of the reading policy (`Reader`), for the request field `param` that held the
    /// prompt.
    pub fn from_cli(e: CliError, param: &str) -> Self {
        match e {
            CliError::Library(e) => ApiError::from_library(&e).param(param),
            CliError::PastWindow { .. } => ApiError::invalid(param, e.to_string()).code("context_length_exceeded"),
            CliError::Usage(message) => ApiError::invalid(param, message),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = match &rejection {
            JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_value"),
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            JsonRejection::MissingJsonContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_content_type"),
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
            }
            _ => (rejection.status(), "invalid_body"),
        };
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "the request body must be JSON with the header `Content-Type: application/json`".to_string()
            }
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than the server takes (--max-request-bytes)".to_string()
            }
            _ => rejection.body_text(),
        };
        ApiError::new(status, "invalid_request_error", message).code(code)
    }
}

/// The answer to a path the server does not have (404).
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("no route for {method} {}", uri.path()))
        .code("not_found")
}

/// The answer to a path the server has under another method (405).
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{} does not take {method}", uri.path()),
    )
    .code("method_not_allowed")
}
