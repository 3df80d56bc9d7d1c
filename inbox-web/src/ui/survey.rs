//! The customers' survey page, `/survey/{token}` (public: the link's token is the only
//! authority; no sign-in, no cookie): a rating from 1 to 5 and an optional comment, taken once
//! before the link expires ([`inbox_core::csat`]). Works on a phone (one column, large targets).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use inbox_core::csat::{self, AnswerError};
use serde::Deserialize;

use super::UiResult;
use crate::http::WebState;

#[derive(Template)]
#[template(path = "survey.html")]
pub struct SurveyPage {
    pub lang: &'static str,
    pub title: &'static str,
    pub token: String,
    pub open: bool,
    pub ok: bool,
    pub message: Option<String>,
    pub ratings: [(u8, &'static str); 5],
}

const RATINGS: [(u8, &str); 5] = [
    (1, "Very poor"),
    (2, "Poor"),
    (3, "OK"),
    (4, "Good"),
    (5, "Excellent"),
];

fn page(
    status: StatusCode,
    token: &str,
    open: bool,
    ok: bool,
    message: Option<String>,
) -> UiResult {
    let body = SurveyPage {
        lang: "en",
        title: "How did we do?",
        token: token.to_owned(),
        open,
        ok,
        message,
        ratings: RATINGS,
    }
    .render()?;
    Ok((status, Html(body)).into_response())
}

/// Tokens are 64 hex digits: anything else is not looked up.
fn plausible(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

pub async fn show(State(state): State<WebState>, Path(token): Path<String>) -> UiResult {
    let survey = if plausible(&token) {
        state.store.survey_by_token(&token).await?
    } else {
        None
    };
    match survey {
        None => gone(StatusCode::NOT_FOUND, &AnswerError::NotFound),
        Some(s) if s.answered_at.is_some() => page(
            StatusCode::OK,
            &token,
            false,
            true,
            Some(AnswerError::Answered.to_string()),
        ),
        Some(s) if s.expires_at <= Utc::now() => gone(StatusCode::GONE, &AnswerError::Expired),
        Some(_) => page(StatusCode::OK, &token, true, false, None),
    }
}

fn gone(status: StatusCode, why: &AnswerError) -> UiResult {
    page(status, "", false, false, Some(why.to_string()))
}

#[derive(Debug, Deserialize)]
pub struct AnswerForm {
    #[serde(default)]
    rating: String,
    #[serde(default)]
    comment: String,
}

pub async fn submit(
    State(state): State<WebState>,
    Path(token): Path<String>,
    Form(form): Form<AnswerForm>,
) -> Result<Response, super::UiError> {
    if !plausible(&token) {
        return gone(StatusCode::NOT_FOUND, &AnswerError::NotFound);
    }
    let rating = form.rating.trim().parse::<i64>().unwrap_or(0);
    match csat::answer(&state.store, &token, rating, &form.comment).await {
        Ok(()) => page(
            StatusCode::OK,
            &token,
            false,
            true,
            Some("Thank you! Your answer helps us get better.".into()),
        ),
        Err(AnswerError::Store(e)) => Err(e.into()),
        Err(e @ AnswerError::NotFound) => gone(StatusCode::NOT_FOUND, &e),
        Err(e @ AnswerError::Expired) => gone(StatusCode::GONE, &e),
        Err(e @ AnswerError::Answered) => page(
            StatusCode::CONFLICT,
            &token,
            false,
            true,
            Some(e.to_string()),
        ),
        Err(e @ AnswerError::Invalid { .. }) => page(
            StatusCode::BAD_REQUEST,
            &token,
            true,
            false,
            Some(e.to_string()),
        ),
    }
}
