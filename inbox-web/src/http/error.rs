//! The one error type of the HTTP layer: JSON `{"error", "message", "field"?}` with a fitting status.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use inbox_core::store::StoreError;
use serde::de::DeserializeOwned;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthorized,
    #[error("not allowed")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("temporarily unavailable")]
    Unavailable,
    /// The request conflicts with the resource's state (a settled dead letter replayed).
    #[error("{0}")]
    Conflict(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<inbox_core::channel_catalog::ConfigError> for ApiError {
    fn from(e: inbox_core::channel_catalog::ConfigError) -> Self {
        ApiError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Invalid { field, message } => ApiError::invalid(field, message),
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "Store unavailable.");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "Store error.");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let mut body = json!({"error": code, "message": self.to_string()});
        if let ApiError::Invalid { field, .. } = &self {
            body["field"] = field.clone().into();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, ApiError::Unavailable) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Decodes a JSON body, naming the offending field on error.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let field = match (path.as_str(), missing) {
            ("." | "" | "?", Some(f)) => f,
            ("." | "" | "?", None) => "body".to_owned(),
            (p, Some(f)) => format!("{p}.{f}"),
            (p, None) => p.to_owned(),
        };
        ApiError::invalid(field, inner)
    })
}
