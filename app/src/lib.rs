//! The inbox as one application: its configuration, the roles (core, web, connectors) wired
//! together in one process or each on its own, and the operations endpoints. The `inbox` binary
//! (the command line) and the tests build on it.

pub mod app;
pub mod config;
pub mod demo;
pub mod directory;
pub mod http_errors;
pub mod ops;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
