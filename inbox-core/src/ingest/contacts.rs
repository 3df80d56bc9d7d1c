//! Step 2 of the funnel (resolve contacts), pure: each message's sender becomes a contact — the
//! one its identity (or its verified email) already has, else a new one — in arrival order, so a
//! batch that introduces a customer twice creates one.

use std::collections::HashMap;

use super::validate::ValidMessage;
use crate::identity::email_identity;
use crate::ids::ContactId;
use crate::model::Identity;
use crate::store::{NewContact, NewIdentity};

/// The batch's contacts.
pub(super) struct ResolvedContacts {
    /// The contact of each message, in the batch's order.
    pub contact_of: Vec<ContactId>,
    pub new_contacts: Vec<NewContact>,
    pub new_identities: Vec<NewIdentity>,
}

/// `identities`: the stored ones of the batch's senders (see `lookup::lock_and_load`).
pub(super) fn resolve(
    messages: &[ValidMessage],
    mut identities: HashMap<Identity, ContactId>,
    now: i64,
) -> ResolvedContacts {
    let mut new_contacts = Vec::new();
    let mut new_identities = Vec::new();
    let mut contact_of = Vec::with_capacity(messages.len());
    for c in messages {
        let email_key = c.verified_email.as_ref().map(email_identity);
        let existing = identities
            .get(&c.identity)
            .or_else(|| email_key.as_ref().and_then(|k| identities.get(k)))
            .copied();
        let contact = match existing {
            Some(contact) => contact,
            None => {
                let contact = ContactId::new();
                new_contacts.push(NewContact {
                    id: contact,
                    name: c.message.from.name.clone(),
                    email: c.verified_email.as_ref().map(|e| e.to_string()),
                    phone: c.message.from.phone.clone(),
                    created_at: now,
                });
                contact
            }
        };
        for key in std::iter::once(c.identity.clone()).chain(email_key) {
            if !identities.contains_key(&key) {
                identities.insert(key.clone(), contact);
                new_identities.push(NewIdentity {
                    namespace: key.namespace,
                    handle: key.handle,
                    contact_id: contact,
                    created_at: now,
                });
            }
        }
        contact_of.push(contact);
    }
    ResolvedContacts {
        contact_of,
        new_contacts,
        new_identities,
    }
}
