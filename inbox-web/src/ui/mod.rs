//! The agents' web UI: server-rendered pages (askama) that work without script, enhanced by one
//! small module of our own (`assets/app.js`: live updates over SSE, fetch for forms, shortcuts).
//! Every page needs a session except the sign-in page, the customers' survey pages and the
//! assets.

mod admin;
mod admin_channels;
mod admin_service_levels;
mod assets;
mod canned;
mod charts;
mod contacts;
mod inbox;
mod live;
mod login;
mod reports;
mod search;
mod survey;
pub(crate) mod view;

use crate::http::route_table::RouteTable;
use askama::Template;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Router, middleware};
use inbox_core::model::{Agent, Role};
use inbox_core::store::StoreError;

use crate::http::{Authenticated, WebState};

/// Every page and form route.
pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/", || async { Redirect::to("/inbox") })
        .get("/login", login::form)
        .post("/login", login::submit)
        .post("/logout", login::logout)
        .get("/inbox", inbox::list)
        .get("/inbox/list", inbox::list_fragment)
        .get("/conversations/{id}", inbox::show)
        .post("/conversations/{id}/reply", inbox::reply)
        .post("/conversations/{id}/update", inbox::update)
        .get("/conversations/{id}/history", inbox::history_fragment)
        .get("/conversations/{id}/meta", inbox::meta_fragment)
        .get(
            "/conversations/{id}/messages/{message}",
            inbox::message_fragment,
        )
        .get("/messages/{id}/html", inbox::email_html)
        .get("/events/stream", live::stream)
        .get("/search", search::page)
        .get("/reports", reports::page)
        .get("/survey/{token}", survey::show)
        .post("/survey/{token}", survey::submit)
        .get("/contacts/{id}", contacts::page)
        .post("/contacts/{id}/merge", contacts::merge)
        .post("/contacts/merges/{id}/undo", contacts::unmerge)
        .get("/canned", canned::page)
        .post("/canned", canned::create)
        .get("/canned.json", canned::json)
        .post("/canned/{id}/delete", canned::delete)
        .get("/admin/channels", admin_channels::channels)
        .post("/admin/channels", admin_channels::add_channel)
        .post(
            "/admin/channels/{id}/{action}",
            admin_channels::channel_action,
        )
        .get("/admin/dead-letters", admin_channels::dead_letters)
        .post(
            "/admin/dead-letters/{id}/{action}",
            admin_channels::dead_letter_action,
        )
        .get(
            "/admin/service-levels",
            admin_service_levels::service_levels,
        )
        .post(
            "/admin/service-levels/business-hours",
            admin_service_levels::set_business_hours,
        )
        .post(
            "/admin/service-levels/sla",
            admin_service_levels::add_policy,
        )
        .post(
            "/admin/service-levels/sla/{id}/delete",
            admin_service_levels::delete_policy,
        )
        .post(
            "/admin/service-levels/csat/{id}",
            admin_service_levels::set_csat,
        )
        .get("/admin/agents", admin::agents)
        .post("/admin/agents", admin::add_agent)
        .post("/admin/agents/{id}", admin::update_agent)
        .post("/admin/agents/{id}/tokens", admin::create_token)
        .post("/admin/agents/{id}/sessions/end", admin::end_sessions)
        .post("/admin/tokens/{id}/revoke", admin::revoke_token)
        .get("/assets/{file}", assets::serve)
}

/// The pages, with their security headers.
pub fn router() -> Router<WebState> {
    routes()
        .into_router()
        .layer(middleware::map_response(security_headers))
}

/// The page's own policy: our script and style only, no inline script, no framing of us.
/// Responses that set their own policy (the email HTML frame) keep theirs.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                 frame-ancestors 'none'",
            ),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A signed-in agent looking at a page; anonymous visitors are sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub agent: Agent,
    pub csrf: String,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.agent.role == Role::Admin
    }

    fn layout(&self, title: impl Into<String>, nav: &'static str) -> view::Layout {
        view::Layout {
            title: title.into(),
            nav,
            agent_name: self.agent.name.clone(),
            is_admin: self.is_admin(),
            csrf: self.csrf.clone(),
        }
    }
}

impl FromRequestParts<WebState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &WebState) -> Result<Self, Response> {
        match parts.extensions.get::<Authenticated>() {
            Some(a) => Ok(Viewer {
                agent: a.agent.clone(),
                // Pages are for browsers; a token caller gets pages too but cannot post forms.
                csrf: a.csrf_token.clone().unwrap_or_default(),
            }),
            None => {
                // Back to the page after signing in; a form post cannot be replayed by a link.
                let target = if parts.method == axum::http::Method::GET {
                    parts
                        .extensions
                        .get::<OriginalUri>()
                        .map(|u| u.0.to_string())
                        .unwrap_or_else(|| parts.uri.to_string())
                } else {
                    "/inbox".to_owned()
                };
                let next = serde_urlencoded::to_string([("next", target)]).unwrap_or_default();
                Err(Redirect::to(&format!("/login?{next}")).into_response())
            }
        }
    }
}

/// An admin looking at an admin page; agents get 403.
#[derive(Debug, Clone)]
pub struct AdminViewer(pub Viewer);

impl FromRequestParts<WebState> for AdminViewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if !viewer.is_admin() {
            return Err(UiError::Forbidden.into_response());
        }
        Ok(AdminViewer(viewer))
    }
}

/// What can go wrong while building a page.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("only admins can do this")]
    Forbidden,
    #[error("{0}")]
    Invalid(String),
    #[error("something went wrong on our side; it has been logged")]
    Internal,
    #[error("the database is busy or unreachable; try again in a moment")]
    Unavailable,
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        // One classification for the API and the pages.
        match crate::http::ApiError::from(e) {
            crate::http::ApiError::NotFound(what) => UiError::NotFound(what),
            crate::http::ApiError::Invalid { field, message } => {
                UiError::Invalid(format!("{field}: {message}"))
            }
            crate::http::ApiError::Unavailable => UiError::Unavailable,
            _ => UiError::Internal,
        }
    }
}

impl From<askama::Error> for UiError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "Template error.");
        UiError::Internal
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Forbidden => StatusCode::FORBIDDEN,
            UiError::Invalid(_) => StatusCode::BAD_REQUEST,
            UiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            UiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let page = view::ErrorPage {
            status: status.as_u16(),
            message: self.to_string(),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.to_string()).into_response(),
        }
    }
}

pub type UiResult<T = Response> = Result<T, UiError>;

/// Renders a template as a full response.
fn render(template: &impl Template) -> UiResult {
    Ok(Html(template.render()?).into_response())
}

/// A form shown again with what was wrong with it.
fn refused(page: UiResult) -> UiResult {
    let mut response = page?;
    *response.status_mut() = StatusCode::BAD_REQUEST;
    Ok(response)
}

/// After a form post: back to where the agent was (a path of ours only), else `fallback`.
fn back_to(next: Option<&str>, fallback: &str) -> Response {
    let target = next.and_then(same_site_path).unwrap_or(fallback);
    Redirect::to(target).into_response()
}

/// `next` when it is a path on this site: ASCII (our own links are percent-encoded), one
/// leading `/`, no backslash, no control or space characters (browsers drop tabs and newlines,
/// so `/\t/evil.example` reads as `//evil.example`), and it parses as a URI with neither scheme
/// nor authority.
fn same_site_path(next: &str) -> Option<&str> {
    let plain = next.is_ascii()
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
    let uri = next.parse::<axum::http::Uri>().ok().filter(|_| plain)?;
    (uri.scheme().is_none() && uri.authority().is_none() && uri.path().starts_with('/'))
        .then_some(next)
}

/// Requests made by our script (fetch) want fragments or JSON instead of redirects.
fn from_script(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("x-requested-with")
        .is_some_and(|v| v == "fetch")
}

#[cfg(test)]
mod tests {
    use super::same_site_path;

    #[test]
    fn only_same_site_paths_are_followed() {
        for good in [
            "/inbox",
            "/conversations/abc?assignee=me",
            "/search?q=a%20b",
            "/",
        ] {
            assert_eq!(same_site_path(good), Some(good), "{good:?}");
        }
        for bad in [
            "",
            "inbox",
            "//evil.example",
            "/\t/evil.example",
            "/\n/x",
            "/\\evil.example",
            "/ /evil.example",
            "https://evil.example/",
            "/\u{7f}x",
            "/caf\u{e9}",
        ] {
            assert_eq!(same_site_path(bad), None, "{bad:?}");
        }
    }
}
