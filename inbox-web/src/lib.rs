//! The agents' side of the inbox: the JSON API and the web UI (server-rendered pages, a small
//! script of our own for live updates and shortcuts, assets embedded in the binary).

mod assignee;
pub mod http;
pub mod ui;

pub use assignee::AssigneeFilter;

pub use http::{WebState, router};
