//! The email channel. Parsing comes first; the IMAP source and SMTP sink follow.

pub mod parse;
