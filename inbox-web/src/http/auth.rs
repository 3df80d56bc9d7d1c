//! Authentication of API calls by bearer token (the web UI's session cookie comes with the UI).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use inbox_core::model::Agent;

use super::{ApiError, WebState};

/// The agent making the request; extracting it refuses anonymous requests with 401.
#[derive(Debug, Clone)]
pub struct CurrentAgent(pub Agent);

impl FromRequestParts<WebState> for CurrentAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let agent = state
            .store
            .agent_by_token(token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(CurrentAgent(agent))
    }
}
