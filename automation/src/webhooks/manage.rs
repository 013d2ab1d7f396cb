//! What the subscription routes decide, without HTTP: create (a new id and secret, the cursor
//! at the log head), patch (the filter re-checked as a whole, re-enabling, a new secret),
//! replay. The API's handlers only read bodies and write answers.

use crm_core::privacy::MasterKey;
use crm_projections::ReadDb;
use serde_json::Value;
use zeroize::Zeroizing;

use super::model::{NewSubscription, Patch, Subscription};
use super::{WebhookError, secrets, tables};

/// A subscription with its secret, shown once.
pub struct WithSecret {
    pub subscription: Subscription,
    /// `whsec_...`, when it was made now (creation, rotation).
    pub secret: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for WithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithSecret")
            .field("subscription", &self.subscription)
            .field("secret", &self.secret.as_ref().map(|_| "[hidden]"))
            .finish()
    }
}

/// Creates a subscription of `tenant` from a POST body; it starts after `head` (the log's
/// head now: it receives the events appended from its creation on).
pub async fn create(
    db: &ReadDb,
    master: &MasterKey,
    tenant: &str,
    body: &Value,
    head: u64,
) -> Result<WithSecret, WebhookError> {
    let new = NewSubscription::parse(body)?;
    let id = format!("wh_{}", uuid::Uuid::new_v4().simple());
    let (secret, sealed) = secrets::generate(master, tenant, &id)?;
    let subscription = tables::insert(db, tenant, &id, &new, &sealed, head).await?;
    Ok(WithSecret {
        subscription,
        secret: Some(secret.shown()),
    })
}

/// Applies a PATCH body to the tenant's subscription `id`.
pub async fn patch(
    db: &ReadDb,
    master: &MasterKey,
    tenant: &str,
    id: &str,
    body: &Value,
) -> Result<WithSecret, WebhookError> {
    let patch = Patch::parse(body)?;
    let stored = tables::get(db, tenant, id)
        .await?
        .ok_or_else(|| WebhookError::NotFound(id.to_owned()))?;
    let current = stored.subscription;
    let event_types = patch
        .event_types
        .clone()
        .unwrap_or_else(|| current.event_types.clone());
    let conditions = patch.conditions_for(&current.conditions, &event_types)?;
    let (secret, sealed_secret) = if patch.rotate_secret {
        let (secret, sealed) = secrets::generate(master, tenant, id)?;
        (Some(secret.shown()), Some(sealed))
    } else {
        (None, None)
    };
    let update = tables::Update {
        url: patch.url.clone().unwrap_or_else(|| current.url.clone()),
        event_types,
        conditions,
        description: patch
            .description
            .clone()
            .unwrap_or_else(|| current.description.clone()),
        reactivate: patch.reactivate,
        sealed_secret,
    };
    if !tables::update(db, tenant, id, &update).await? {
        return Err(WebhookError::NotFound(id.to_owned()));
    }
    let subscription = tables::get(db, tenant, id)
        .await?
        .ok_or_else(|| WebhookError::NotFound(id.to_owned()))?
        .subscription;
    Ok(WithSecret {
        subscription,
        secret,
    })
}

/// Resends from log position `from` (inclusive): the cursor moves back, the messages keep
/// their ids. `from` must be 1 to `head + 1`.
pub async fn replay(
    db: &ReadDb,
    tenant: &str,
    id: &str,
    from: u64,
    head: u64,
) -> Result<Subscription, WebhookError> {
    if from == 0 || from > head.saturating_add(1) {
        return Err(WebhookError::Invalid {
            member: "from".into(),
            reason: format!("a log position from 1 to {} (the head + 1)", head + 1),
        });
    }
    if !tables::replay(db, tenant, id, from).await? {
        return Err(WebhookError::NotFound(id.to_owned()));
    }
    tables::get(db, tenant, id)
        .await?
        .map(|s| s.subscription)
        .ok_or_else(|| WebhookError::NotFound(id.to_owned()))
}
