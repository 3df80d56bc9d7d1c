//! Routes as data: each area lists its (method, path, handler) and the router is built from the
//! list, so the list of what is served is the router's own (axum cannot enumerate a router). The
//! route-matrix and OpenAPI tests check every served route against it.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post, put};

/// A route: its method and its path pattern (`/api/v1/channels/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
}

/// Routes not yet made into a router.
pub struct RouteTable<S> {
    routes: Vec<(Route, MethodRouter<S>)>,
}

impl<S: Clone + Send + Sync + 'static> RouteTable<S> {
    pub fn new() -> Self {
        RouteTable { routes: Vec::new() }
    }

    fn add(mut self, method: Method, path: &'static str, handler: MethodRouter<S>) -> Self {
        self.routes.push((Route { method, path }, handler));
        self
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::GET, path, get(handler))
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::POST, path, post(handler))
    }

    pub fn patch<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::PATCH, path, patch(handler))
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::PUT, path, put(handler))
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::DELETE, path, delete(handler))
    }

    pub fn merge(mut self, other: RouteTable<S>) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// What is served, in the order listed.
    pub fn list(&self) -> Vec<Route> {
        self.routes.iter().map(|(route, _)| route.clone()).collect()
    }

    /// The router (two methods on one path are merged into one method router).
    pub fn into_router(self) -> Router<S> {
        self.routes
            .into_iter()
            .fold(Router::new(), |router, (route, handler)| {
                router.route(route.path, handler)
            })
    }
}

impl<S> std::fmt::Debug for RouteTable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|(route, _)| route))
            .finish()
    }
}

impl<S: Clone + Send + Sync + 'static> Default for RouteTable<S> {
    fn default() -> Self {
        Self::new()
    }
}
