//! The database a bench runs on: a SQLite file in a temporary directory, or a scratch database on
//! the PostgreSQL server of INBOX_DATABASE_URL (made and dropped as the tests make theirs).

use anyhow::Context;
use inbox_app::config::Config;
use inbox_core::store::test_support::ScratchDatabase;
use inbox_core::store::{Store, StoreConfig};

use crate::StoreKind;

/// A store for one measurement.
#[derive(Debug)]
pub(crate) struct BenchStore {
    pub(crate) store: Store,
    _dir: Option<tempfile::TempDir>,
    scratch: Option<ScratchDatabase>,
}

impl BenchStore {
    pub(crate) async fn create(
        config: &Config,
        kind: StoreKind,
        label: &str,
    ) -> anyhow::Result<BenchStore> {
        match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir()?;
                let store = Store::open(&StoreConfig::Sqlite {
                    path: dir.path().join("bench.db"),
                })
                .await?;
                Ok(BenchStore {
                    store,
                    _dir: Some(dir),
                    scratch: None,
                })
            }
            StoreKind::Postgres => {
                let server = config.database_url.as_deref().context(
                    "--store postgres needs INBOX_DATABASE_URL (any database on the server)",
                )?;
                let scratch =
                    ScratchDatabase::create(server, &format!("inbox_bench_{label}")).await?;
                let store = Store::open(&StoreConfig::Postgres {
                    url: scratch.url().to_owned(),
                    max_connections: 16,
                })
                .await?;
                Ok(BenchStore {
                    store,
                    _dir: None,
                    scratch: Some(scratch),
                })
            }
        }
    }

    pub(crate) async fn drop_database(self) -> anyhow::Result<()> {
        self.store.close().await;
        if let Some(scratch) = self.scratch {
            scratch.drop_database().await?;
        }
        Ok(())
    }
}
