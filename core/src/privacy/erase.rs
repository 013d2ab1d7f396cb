//! Erasure of a data subject, the one decision behind `POST /v1/customers/{id}/erase`,
//! `POST /v1/leads/{id}/erase` and `crm-replay erase`.
//!
//! The erasure event (`CustomerErased`, `LeadErased`) is appended through the
//! [`PrivateStore`], which destroys the subject's keys (and those of every subject linked to
//! it) in the same transaction, so the log and the key table never disagree, whatever
//! crashes. Its id is derived from the tenant and the subject, so erasing again appends
//! nothing; a subject already tombstoned (erased with its survivor, say) is answered without
//! appending.

use serde::Serialize;
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, StreamId, TenantId};
use crate::ids::EntityId;
use crate::privacy::PrivateStore;
use crate::store::keys::{customer_subject, lead_subject};
use crate::store::{Direction, EventStore, ExpectedRevision, StoreError, StreamStart};

/// Namespace of erasure event ids.
const ERASURE_NAMESPACE: Uuid = Uuid::from_u128(0x6372_6d2d_6572_6173_7572_652d_6576_0001);

/// Who is erased.
#[derive(Debug, Clone)]
pub enum ErasureTarget {
    Customer(EntityId),
    Lead(EntityId),
}

/// What an erasure did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// `customer:<id>` or `lead:<id>`.
    pub subject: String,
    /// The erasure event's id and position (`None` when the subject was already tombstoned
    /// and nothing was appended).
    pub event_id: Option<Uuid>,
    pub position: Option<Position>,
    /// True when the subject had been erased before this call.
    pub already_erased: bool,
}

/// Why an erasure was refused.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// Nothing is stored about the subject (HTTP 404).
    #[error("{0} is unknown: no stream and no personal data of it is stored")]
    NotFound(String),
    /// A converted lead is erased with its customer (HTTP 409).
    #[error(
        "lead {lead} was converted to customer {customer}: erase the customer, which erases the lead with it"
    )]
    LeadConverted { lead: String, customer: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Erases `target` in `tenant`; see the module documentation.
pub async fn erase(
    store: &PrivateStore,
    tenant: &TenantId,
    target: &ErasureTarget,
) -> Result<Erasure, EraseError> {
    let (stream, subject, event_type, data) = match target {
        ErasureTarget::Customer(id) => (
            StreamId::new("customer", id.as_str()),
            customer_subject(id.as_str()),
            "CustomerErased",
            serde_json::json!({ "customer_id": id.as_str() }),
        ),
        ErasureTarget::Lead(id) => (
            StreamId::new("lead", id.as_str()),
            lead_subject(id.as_str()),
            "LeadErased",
            serde_json::json!({ "lead_id": id.as_str() }),
        ),
    };
    let stream = stream.map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    let table = store.vault().table();
    let keys = table
        .keys_of_subjects(tenant, std::slice::from_ref(&subject))
        .await?;
    let head = store.stream_head(tenant, &stream).await?;
    if head.is_none() && keys.is_empty() {
        return Err(EraseError::NotFound(subject));
    }
    if keys.first().is_some_and(|key| key.wrapped.is_none()) && head.is_none() {
        // Erased with another subject (a merge survivor, a converted lead's customer).
        return Ok(Erasure {
            subject,
            event_id: None,
            position: None,
            already_erased: true,
        });
    }
    if let ErasureTarget::Lead(id) = target
        && let Some(customer) = converted_to(store, tenant, &stream).await?
    {
        return Err(EraseError::LeadConverted {
            lead: id.as_str().to_owned(),
            customer,
        });
    }
    let event_id = Uuid::new_v5(
        &ERASURE_NAMESPACE,
        format!("{tenant}\n{subject}").as_bytes(),
    );
    let already_tombstoned = keys.first().is_some_and(|key| key.wrapped.is_none());
    let outcome = store
        .append(
            tenant,
            &stream,
            ExpectedRevision::Any,
            vec![NewEvent::new(event_type, &data).with_id(event_id)],
        )
        .await?;
    store.vault().forget_all();
    let appended = &outcome.events[0];
    Ok(Erasure {
        subject,
        event_id: Some(event_id),
        position: Some(appended.position),
        already_erased: appended.duplicate || already_tombstoned,
    })
}

/// The customer a lead was converted to, if it was.
async fn converted_to(
    store: &PrivateStore,
    tenant: &TenantId,
    stream: &StreamId,
) -> Result<Option<String>, StoreError> {
    let mut from = 0;
    loop {
        let events = store
            .inner()
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Revision(from),
                500,
            )
            .await?;
        let Some(last) = events.last() else {
            return Ok(None);
        };
        from = last.revision + 1;
        for event in &events {
            if event.event_type == "LeadConverted"
                && let Ok(data) = event.decode_data::<serde_json::Value>()
                && let Some(customer) = data.get("customer_id").and_then(|c| c.as_str())
            {
                return Ok(Some(customer.to_owned()));
            }
        }
    }
}

/// Makes what an erasure overwrote in the key table unrecoverable from the database files
/// (see [`crate::store::keys::KeyTable::scrub`]). Run it after the read models have applied
/// the erasure, together with the read models' own scrub.
pub async fn scrub_keys(store: &PrivateStore) -> Result<(), StoreError> {
    store.vault().table().scrub().await
}
