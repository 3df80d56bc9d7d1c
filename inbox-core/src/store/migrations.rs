//! The schema's migrations, per backend. A migration whose SQL is the same for both backends is
//! kept once, in `migrations/shared/`; the others in `migrations/sqlite/` and
//! `migrations/postgres/`. Each backend's list says which files it runs, in order; a test checks
//! that every file is listed and the lists agree on their shared versions.
//!
//! Checksums are those `sqlx migrate` computes (SHA-384 of the file), so databases migrated before
//! the files were shared stay valid.

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::SqlSafeStr;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// One migration file: where it is and its SQL.
#[derive(Debug, Clone, Copy)]
pub(super) struct MigrationFile {
    /// `shared/0002_subject_key.sql`.
    pub path: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($path:literal) => {
        MigrationFile {
            path: $path,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $path)),
        }
    };
}

pub(super) const SQLITE: &[MigrationFile] = &[
    migration!("sqlite/0001_initial.sql"),
    migration!("shared/0002_subject_key.sql"),
    migration!("sqlite/0003_inbox_features.sql"),
    migration!("shared/0004_sessions.sql"),
    migration!("sqlite/0005_hardening.sql"),
    migration!("sqlite/0006_event_outbox.sql"),
    migration!("shared/0008_channel_admin.sql"),
    migration!("shared/0009_metric_samples.sql"),
    migration!("shared/0010_metric_state_business_hours.sql"),
    migration!("shared/0011_sla.sql"),
    migration!("shared/0012_csat.sql"),
    migration!("shared/0013_metric_samples_covering.sql"),
    migration!("sqlite/0014_metric_rollups.sql"),
    migration!("shared/0015_message_edits.sql"),
    migration!("shared/0016_message_parts.sql"),
];

pub(super) const POSTGRES: &[MigrationFile] = &[
    migration!("postgres/0001_initial.sql"),
    migration!("shared/0002_subject_key.sql"),
    migration!("postgres/0003_inbox_features.sql"),
    migration!("shared/0004_sessions.sql"),
    migration!("postgres/0005_hardening.sql"),
    migration!("postgres/0006_event_outbox.sql"),
    migration!("postgres/0007_event_outbox_notify.sql"),
    migration!("shared/0008_channel_admin.sql"),
    migration!("shared/0009_metric_samples.sql"),
    migration!("shared/0010_metric_state_business_hours.sql"),
    migration!("shared/0011_sla.sql"),
    migration!("shared/0012_csat.sql"),
    migration!("shared/0013_metric_samples_covering.sql"),
    migration!("postgres/0014_metric_rollups.sql"),
    migration!("shared/0015_message_edits.sql"),
    migration!("shared/0016_message_parts.sql"),
];

impl MigrationFile {
    /// Version and description from the file name, as `sqlx migrate` reads them
    /// (`0002_subject_key.sql` → 2, "subject key").
    fn version_and_description(&self) -> Result<(i64, String), String> {
        let name = self.path.rsplit('/').next().unwrap_or(self.path);
        let stem = name
            .strip_suffix(".sql")
            .ok_or_else(|| format!("{}: not a .sql file", self.path))?;
        let (version, description) = stem
            .split_once('_')
            .ok_or_else(|| format!("{}: no <version>_<description>", self.path))?;
        let version = version
            .parse()
            .map_err(|e| format!("{}: version: {e}", self.path))?;
        Ok((version, description.replace('_', " ")))
    }

    fn migration(&self) -> Result<Migration, String> {
        let (version, description) = self.version_and_description()?;
        Ok(Migration::new(
            version,
            Cow::Owned(description),
            MigrationType::Simple,
            self.sql.into_sql_str(),
            self.sql.starts_with("-- no-transaction"),
        ))
    }
}

/// A backend's list as sqlx's migration source.
#[derive(Debug, Clone, Copy)]
struct Files(&'static [MigrationFile]);

impl MigrationSource<'static> for Files {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            self.0
                .iter()
                .map(|file| file.migration().map_err(BoxDynError::from))
                .collect()
        })
    }
}

/// The migrator of a backend's list.
pub(super) async fn migrator(
    files: &'static [MigrationFile],
) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Files(files)).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn listed(files: &[MigrationFile]) -> Vec<&'static str> {
        files.iter().map(|f| f.path).collect()
    }

    #[test]
    fn every_file_is_listed_and_versions_increase() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut on_disk = BTreeSet::new();
        for sub in ["shared", "sqlite", "postgres"] {
            for entry in std::fs::read_dir(format!("{dir}/{sub}")).expect("migrations dir") {
                let name = entry.expect("entry").file_name();
                on_disk.insert(format!("{sub}/{}", name.to_string_lossy()));
            }
        }
        let mut in_lists: BTreeSet<String> = BTreeSet::new();
        for files in [SQLITE, POSTGRES] {
            let mut last = 0;
            for file in files {
                let (version, _) = file.version_and_description().expect("a migration name");
                assert!(version > last, "{} out of order", file.path);
                last = version;
                in_lists.insert(file.path.to_owned());
            }
        }
        assert_eq!(
            in_lists, on_disk,
            "migration files not listed, or listed but missing"
        );
        let shared = |files: &[MigrationFile]| -> Vec<&str> {
            listed(files)
                .into_iter()
                .filter(|p| p.starts_with("shared/"))
                .collect()
        };
        assert_eq!(
            shared(SQLITE),
            shared(POSTGRES),
            "both run every shared file"
        );
    }

    /// sqlx's own reading of each directory gives the same versions, descriptions and checksums
    /// as the lists: a database migrated before the files moved stays valid.
    #[tokio::test]
    async fn the_lists_read_as_sqlx_reads_the_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        for (backend, files) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let ours = migrator(files).await.expect("our migrator");
            let mut theirs = Vec::new();
            for sub in ["shared", backend] {
                let from_dir = Migrator::new(std::path::PathBuf::from(format!("{dir}/{sub}")))
                    .await
                    .expect("sqlx reads the directory");
                theirs.extend(from_dir.iter().cloned());
            }
            theirs.sort_by_key(|m| m.version);
            let key = |m: &Migration| (m.version, m.description.to_string(), m.checksum.to_vec());
            assert_eq!(
                ours.iter().map(key).collect::<Vec<_>>(),
                theirs.iter().map(key).collect::<Vec<_>>(),
                "{backend}"
            );
        }
    }
}
