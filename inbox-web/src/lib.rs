//! The agents' side of the inbox: the JSON API (and, later, the web UI).

pub mod http;

pub use http::{WebState, router};
