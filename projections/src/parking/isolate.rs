//! Finding the event a batch failed on: the batch again, one transaction per event, so the
//! event that fails on its own parks its tenant and every other event is applied.

use std::collections::BTreeSet;

use crm_core::envelope::Position;

use super::{Batch, Item, Split, is_poison, record};
use crate::bookkeeping;
use crate::db::ReadDb;
use crate::error::ProjectionError;
use crate::lease::Leases;
use crate::projection::{Projection, Tables};

/// The lane being isolated: its generation, tables, checkpoint and parked tenants, moved
/// forward as each event's transaction commits.
#[derive(Debug)]
pub(crate) struct IsolateLane<'a> {
    pub generation: i64,
    pub tables: &'a Tables,
    pub position: &'a mut Position,
    pub parked: &'a mut BTreeSet<String>,
}

/// Applies `batch` to one lane event by event. An event whose apply fails with an error
/// about the event ([`is_poison`]) is recorded as the tenant's failure and parked, in the
/// transaction that moves the checkpoint past it; any other error stops here (the events
/// before it stay applied) and is returned for the runner to retry.
pub(crate) async fn isolate(
    db: &ReadDb,
    leases: &Leases,
    projection: &dyn Projection,
    lane: IsolateLane<'_>,
    batch: &Batch,
) -> Result<(), ProjectionError> {
    let name = projection.name();
    for (position, tenant, item) in batch.items() {
        if position <= *lane.position {
            continue;
        }
        let mut split = Split::default();
        match item {
            Item::Event(event) if !lane.parked.contains(tenant) => {
                let mut tx = db.begin().await?;
                match projection
                    .apply(&mut tx, lane.tables, std::slice::from_ref(event))
                    .await
                {
                    Ok(()) => {
                        bookkeeping::advance(
                            &mut tx,
                            name,
                            lane.generation,
                            *lane.position,
                            position,
                        )
                        .await?;
                        leases.renew(&mut tx, name).await?;
                        tx.commit().await?;
                        *lane.position = position;
                        continue;
                    }
                    Err(error) if is_poison(&error) => {
                        tx.rollback().await?;
                        split
                            .failures
                            .push((tenant.to_owned(), position, error.to_string()));
                    }
                    Err(error) => return Err(error),
                }
            }
            Item::Event(_) => {}
            Item::Undecodable(undecodable) => {
                if !lane.parked.contains(tenant) {
                    split
                        .failures
                        .push((tenant.to_owned(), position, undecodable.reason.clone()));
                }
            }
        }
        split.parked.push((tenant.to_owned(), position));
        let mut tx = db.begin().await?;
        record(&mut tx, name, lane.generation, &split).await?;
        bookkeeping::advance(&mut tx, name, lane.generation, *lane.position, position).await?;
        leases.renew(&mut tx, name).await?;
        tx.commit().await?;
        *lane.position = position;
        lane.parked.insert(tenant.to_owned());
    }
    Ok(())
}
