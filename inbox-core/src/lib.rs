//! The domain of the inbox: the envelope every channel speaks, the Store and Bus ports, and the one
//! ingest funnel every inbound event goes through.

pub mod actions;
pub mod agent_signals;
pub mod bus;
pub mod business_hours;
pub mod channel_catalog;
pub mod channel_rules;
pub mod csat;
pub mod envelope;
pub mod event_relay;
pub mod file_name;
pub mod identity;
pub mod ids;
pub mod ingest;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod passwords;
pub mod relay;
pub mod replay;
pub mod reports;
pub mod sla;
pub mod store;
pub mod threading;
pub mod timers;
pub mod worker;
