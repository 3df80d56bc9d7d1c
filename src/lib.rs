//! The `inbox` binary's library: configuration, the all-in-one application and the CLI.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod directory;
pub mod http_errors;
pub mod ops;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
