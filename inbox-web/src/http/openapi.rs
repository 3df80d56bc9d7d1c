//! `GET /api/v1/openapi.json`: the OpenAPI document of the `/api/v1` routes, generated from the
//! handlers' `#[utoipa::path]` annotations. Public, like `/healthz`: it describes the API.

use crate::http::route_table::RouteTable;
use axum::Json;
use inbox_core::model::{Contact, Conversation, Identity};
use inbox_core::store::MessagePage;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::WebState;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new().get("/api/v1/openapi.json", document)
}

async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The body of every error of the API.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "only describes the JSON that `ApiError` writes")]
pub(super) struct ErrorBody {
    /// A stable code: `invalid_field`, `unauthorized`, `not_found`, `too_large`, `unavailable`,
    /// `internal`.
    error: String,
    /// For people.
    message: String,
    /// With `invalid_field`: the parameter or body field at fault.
    field: Option<String>,
}

/// A contact with everything about them on every channel.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "only describes the JSON that `contacts::show` writes"
)]
pub(super) struct ContactView {
    contact: Contact,
    identities: Vec<Identity>,
    /// Their conversations on every channel.
    conversations: Vec<Conversation>,
    /// One page of their messages across all channels (newest page first, oldest first within).
    timeline: MessagePage,
}

/// Adds the Bearer scheme the operations refer to.
#[derive(Debug)]
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "An API token (`inbox user add`, or the Agents page). The web UI's session cookie \
             works too; then a state-changing request needs the `X-CSRF-Token` header."
                .to_owned(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Inbox API",
        description = "The omnichannel support inbox's JSON API. Ids are UUID strings, times \
                       RFC 3339 in UTC. A malformed id in a path answers 404."
    ),
    paths(
        super::conversations::list,
        super::conversations::show,
        super::conversations::update,
        super::conversations::messages,
        super::conversations::post_message,
        super::conversations::events,
        super::signals::typing,
        super::contacts::show,
        super::contacts::merge,
        super::contacts::unmerge,
        super::search::search,
        super::attachments::upload,
        super::attachments::download,
        super::channels::kinds,
        super::channels::list,
        super::channels::create,
        super::channels::show,
        super::channels::update,
        super::channels::remove,
        super::channels::test,
        super::channels::health,
        super::dead_letters::list,
        super::dead_letters::replay,
        super::dead_letters::discard,
        super::reports::response_times,
        super::reports::volume,
        super::business_hours::show_default,
        super::business_hours::set_default,
        super::business_hours::show_channel,
        super::business_hours::set_channel,
        super::sla::list,
        super::sla::create,
        super::sla::remove,
        super::csat::show,
        super::csat::set,
        super::csat::report,
    ),
    components(schemas(ErrorBody, ContactView)),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "conversations", description = "Conversations, their messages and log."),
        (name = "contacts", description = "Customers across channels, and merging them."),
        (name = "search", description = "Full-text search over messages and notes."),
        (name = "attachments", description = "Uploading and downloading files."),
        (name = "channels", description = "Channels and their kinds (admins only)."),
        (name = "dead letters", description = "Inputs that could not be stored: replay or discard (admins only)."),
        (name = "reports", description = "Response times, volume and SLA attainment, from the stored samples (docs/metrics.md)."),
    )
)]
struct ApiDoc;
