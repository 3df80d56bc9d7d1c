//! HTTP routes, one module per area, each exposing `router()`.

pub(crate) mod attachments;
pub mod auth;
pub(crate) mod business_hours;
pub(crate) mod channels;
pub mod client_addr;
mod contacts;
pub(crate) mod conversations;
pub(crate) mod csat;
pub(crate) mod dead_letters;
pub mod device_cookie;
mod error;
mod openapi;
pub(crate) mod reports;
pub mod route_table;
mod search;
pub mod sign_in_limits;
pub(crate) mod signals;
pub(crate) mod sla;

use std::sync::Arc;

use axum::Router;
use inbox_core::bus::Bus;
use inbox_core::channel_catalog::ChannelCatalog;
use inbox_core::ingest::IngestSettings;
use inbox_core::store::Store;
use object_store::ObjectStore;
use tokio::sync::Notify;

pub use auth::{AdminAgent, AuthSettings, Authenticated, CurrentAgent};
pub use error::ApiError;
pub use route_table::{Route, RouteTable};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct WebState {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    /// Woken when a reply was stored, so the outbox relay hands it to the bus at once.
    pub outbox_ready: Arc<Notify>,
    /// Attachments and raw sources (the same object store the connectors write to).
    pub blobs: Arc<dyn ObjectStore>,
    /// Session cookies and sign-in limits.
    pub auth: Arc<AuthSettings>,
    /// The channel kinds of this build (the connectors' registry).
    pub catalog: Arc<dyn ChannelCatalog>,
    /// The funnel's settings, for replaying dead letters.
    pub ingest: Arc<IngestSettings>,
    /// The base URL customers reach the product at (survey links).
    pub public_url: Arc<str>,
}

/// The JSON API's routes.
fn api_routes() -> RouteTable<WebState> {
    conversations::routes()
        .merge(attachments::routes())
        .merge(contacts::routes())
        .merge(search::routes())
        .merge(channels::routes())
        .merge(dead_letters::routes())
        .merge(reports::routes())
        .merge(business_hours::routes())
        .merge(sla::routes())
        .merge(csat::routes())
        .merge(signals::routes())
        .merge(openapi::routes())
}

/// Every route the agents' side serves (the API and the pages), as the router is built from it.
pub fn served_routes() -> Vec<Route> {
    let mut routes = api_routes().list();
    routes.extend(crate::ui::routes().list());
    routes
}

/// Every route of the agents' side.
pub fn router(state: WebState) -> Router {
    crate::ui::view::set_kind_icons(state.catalog.as_ref());
    api_routes()
        .into_router()
        .merge(crate::ui::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
}
