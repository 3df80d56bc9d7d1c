//! Contacts and their identities (one customer across channels): what the funnel creates and
//! the contact page shows. Merging two contacts is in [`super::merges`].

use sqlx::FromRow;

use super::{Store, StoreResult, on_pool};
use crate::ids::ContactId;
use crate::model::{Contact, Identity, from_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub id: ContactId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewIdentity {
    pub namespace: String,
    pub handle: String,
    pub contact_id: ContactId,
    pub created_at: i64,
}

impl Store {
    pub async fn contact(&self, id: ContactId) -> StoreResult<Option<(Contact, Vec<Identity>)>> {
        #[derive(FromRow)]
        struct ContactRow {
            id: ContactId,
            name: Option<String>,
            email: Option<String>,
            phone: Option<String>,
            created_at: i64,
        }
        let (row, identities) = on_pool!(self, pool, Db => {
            let row = sqlx::query_as::<Db, ContactRow>(
                "SELECT id, name, email, phone, created_at FROM contacts WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let identities = sqlx::query_as::<Db, (String, String)>(
                "SELECT namespace, handle FROM contact_identities WHERE contact_id = $1
                 ORDER BY created_at, namespace, handle",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>((row, identities))
        })?;
        Ok(row.map(|r| {
            (
                Contact {
                    id: r.id,
                    name: r.name,
                    email: r.email,
                    phone: r.phone,
                    created_at: from_millis(r.created_at),
                },
                identities
                    .into_iter()
                    .map(|(namespace, handle)| Identity { namespace, handle })
                    .collect(),
            )
        }))
    }
}
