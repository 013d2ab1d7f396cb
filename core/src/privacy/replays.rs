//! Exact idempotency over sealed data: an event id sent again must carry the same data. The
//! one decision behind `POST /v1/events` and `crm-replay import`.
//!
//! No digest of the data is stored: the stored event is read back, its personal fields
//! opened, and compared with what was sent. A subject erased since cannot be compared (its
//! fields read [`super::ERASED`]): the replay is taken as the duplicate it claims to be. An
//! event that arrives sealed (a restore) is compared as stored, byte for byte, or else on its
//! fields that are not personal.

use std::collections::HashMap;

use crate::envelope::{NewEvent, Position, TenantId};
use crate::privacy::fields::{may_hold_sealed, same_content, scan};
use crate::store::{EventStore, StoreError, StoredEventRef};

/// Of the `candidates` (an index of the caller's, the stored event its id names, the event
/// sent again), the indexes of those whose data differs from what is stored.
pub async fn sent_with_other_data(
    store: &dyn EventStore,
    tenant: &TenantId,
    candidates: &[(usize, &StoredEventRef, &NewEvent)],
) -> Result<Vec<usize>, StoreError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Sealed arrivals are compared as stored (no key needed: a restore may come before its
    // keys); plain ones with their stored fields opened.
    let positions = |sealed: bool| -> Vec<Position> {
        let mut positions: Vec<Position> = candidates
            .iter()
            .filter(|(_, _, event)| may_hold_sealed(event.data.get()) == sealed)
            .map(|(_, s, _)| s.position)
            .collect();
        positions.sort_unstable();
        positions.dedup();
        positions
    };
    let read = |events: Vec<crate::envelope::RecordedEvent>| -> HashMap<Position, String> {
        events
            .into_iter()
            .map(|e| (e.position, e.data.get().to_owned()))
            .collect()
    };
    let (plain, sealed) = (positions(false), positions(true));
    let opened = if plain.is_empty() {
        HashMap::new()
    } else {
        read(store.read_positions(tenant, &plain).await?)
    };
    let raw = match (sealed.is_empty(), store.stored()) {
        (true, _) => HashMap::new(),
        (false, Some(raw)) => read(raw.read_positions(tenant, &sealed).await?),
        (false, None) => read(store.read_positions(tenant, &sealed).await?),
    };
    let mut differ = Vec::new();
    for (index, stored, event) in candidates {
        let sent = event.data.get();
        let same = if may_hold_sealed(sent) {
            raw.get(&stored.position)
                .is_some_and(|d| d == sent || same_except_personal(&stored.event_type, d, sent))
        } else {
            opened
                .get(&stored.position)
                .and_then(|d| same_content(&stored.event_type, d, sent))
                != Some(false)
        };
        if !same {
            differ.push(*index);
        }
    }
    Ok(differ)
}

/// The same members but for the values of personal fields.
fn same_except_personal(event_type: &str, stored: &str, sent: &str) -> bool {
    let personal = crate::catalog::personal_fields(event_type);
    let (Some(a), Some(b)) = (scan(stored), scan(sent)) else {
        return false;
    };
    let keep =
        |members: Vec<(&str, std::ops::Range<usize>)>, text: &str| -> Vec<(String, String)> {
            members
                .into_iter()
                .filter(|(name, _)| !personal.contains(name))
                .map(|(name, range)| (name.to_owned(), text[range].to_owned()))
                .collect()
        };
    keep(a, stored) == keep(b, sent)
}
