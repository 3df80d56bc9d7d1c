//! Reports: the response-time samples kept up to date with the log (in the transaction that
//! appends to it), their rebuild from the log, and the queries reports answer from them.

mod measure;
mod query;
mod rebuild;
pub(crate) mod rollup;

pub(crate) use measure::measure_appended;
pub use query::{
    Attainment, Group, GroupBy, Hours, MAX_DAYS, Range, Report, ReportQuery, VolumeDay,
    response_times, response_times_from_samples, volume,
};
pub use rebuild::{Rebuilt, rebuild};
