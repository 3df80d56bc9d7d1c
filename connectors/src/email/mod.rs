//! The email channel: parsing (MIME → envelope) and the SMTP sink. The IMAP source follows.

mod config;
pub mod parse;
pub mod smtp;

pub use config::EmailConfig;
