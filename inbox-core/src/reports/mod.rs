//! Reports: the response-time samples kept up to date with the log (in the transaction that
//! appends to it), their rebuild from the log, and the queries reports answer from them.

mod measure;
mod rebuild;

pub(crate) use measure::measure_appended;
pub use rebuild::{Rebuilt, rebuild};
