//! Shared table shapes of the read models: document rows (a JSON document plus the columns
//! queries filter and sort on, keyed by tenant and id) loaded and upserted a batch at a time,
//! and link rows (tenant, key → customer) that attribute events to customers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crm_core::catalog::DomainEvent;
use crm_core::ids::EntityId;

use crate::db::{Col, ReadTx, SqlValue, in_clauses};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;

/// A (tenant, id) key.
pub type Key = (String, String);

/// A read-model row kept as a JSON document with some columns beside it.
pub trait DocRow: Serialize + DeserializeOwned {
    /// The columns after `tenant, id` and before `doc`, in table order.
    const COLUMNS: &'static [&'static str];
    /// Values of [`DocRow::COLUMNS`], in order.
    fn column_values(&self) -> Vec<SqlValue>;
}

/// Loads the documents of `keys` from `table` (columns `tenant, id, ..., doc`).
pub async fn load_docs<T: DocRow>(
    tx: &mut ReadTx,
    table: &str,
    keys: &BTreeSet<Key>,
) -> Result<HashMap<Key, T>, ProjectionError> {
    let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tenant, id) in keys {
        by_tenant.entry(tenant).or_default().push(id);
    }
    let mut docs = HashMap::with_capacity(keys.len());
    for (tenant, ids) in by_tenant {
        for (condition, ids) in in_clauses(tx.backend(), "id", &ids) {
            let sql = format!("SELECT id, doc FROM {table} WHERE tenant = ? AND {condition}");
            let mut args = vec![SqlValue::text(tenant)];
            args.extend(ids);
            for row in tx.fetch(&sql, args, &[Col::Text, Col::Text]).await? {
                let mut row = row.into_iter();
                let id = row.next().and_then(SqlValue::into_text).unwrap_or_default();
                let doc = row.next().and_then(SqlValue::into_text).unwrap_or_default();
                let value: T = decode_doc(table, tenant, &id, &doc)?;
                docs.insert((tenant.to_owned(), id), value);
            }
        }
    }
    Ok(docs)
}

/// Parses a stored document.
pub fn decode_doc<T: DeserializeOwned>(
    table: &str,
    tenant: &str,
    id: &str,
    doc: &str,
) -> Result<T, ProjectionError> {
    serde_json::from_str(doc).map_err(|e| ProjectionError::Corrupt {
        table: table.to_owned(),
        key: format!("{tenant}/{id}"),
        reason: e.to_string(),
    })
}

/// Writes documents (inserting or replacing) with multi-row statements.
pub async fn upsert_docs<'a, T: DocRow + 'a>(
    tx: &mut ReadTx,
    table: &str,
    rows: impl IntoIterator<Item = (&'a Key, &'a T)>,
) -> Result<(), ProjectionError> {
    let mut columns = vec!["tenant", "id"];
    columns.extend_from_slice(T::COLUMNS);
    columns.push("doc");
    let mut values = Vec::new();
    for ((tenant, id), doc) in rows {
        let mut row = Vec::with_capacity(columns.len());
        row.push(SqlValue::text(tenant.as_str()));
        row.push(SqlValue::text(id.as_str()));
        row.extend(doc.column_values());
        let json = serde_json::to_string(doc).map_err(|e| ProjectionError::Corrupt {
            table: table.to_owned(),
            key: format!("{tenant}/{id}"),
            reason: format!("cannot serialise: {e}"),
        })?;
        row.push(SqlValue::Text(json));
        values.push(row);
    }
    let updates: Vec<String> = columns[2..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let suffix = format!(
        "ON CONFLICT (tenant, id) DO UPDATE SET {}",
        updates.join(", ")
    );
    tx.insert_rows(table, &columns, values, &suffix).await
}

/// Ids of the rows of `table` (a document table with a `customer_id` column) that belong to
/// `customers`: the rows an erasure must clear.
pub(crate) async fn ids_of_customers(
    tx: &mut ReadTx,
    table: &str,
    customers: &BTreeSet<Key>,
) -> Result<Vec<Key>, ProjectionError> {
    let mut keys = Vec::new();
    for (tenant, customer) in customers {
        let rows = tx
            .fetch(
                &format!("SELECT id FROM {table} WHERE tenant = ? AND customer_id = ?"),
                vec![tenant.as_str().into(), customer.as_str().into()],
                &[Col::Text],
            )
            .await?;
        keys.extend(
            rows.into_iter()
                .filter_map(|mut r| r.remove(0).into_text())
                .map(|id| (tenant.clone(), id)),
        );
    }
    Ok(keys)
}

/// `customer` and every customer merged into it (transitively), as the customer 360 read
/// model's links record the merges (`merged:<id>` → survivor). A merge that read model has
/// not applied yet is missed here; a rebuild from the log, where the merged customer's
/// personal fields read erased, clears it.
pub(crate) async fn merged_into(
    tx: &mut ReadTx,
    tenant: &str,
    customer: &str,
) -> Result<BTreeSet<String>, ProjectionError> {
    let mut all = BTreeSet::from([customer.to_owned()]);
    // A store that runs this projection without the customer 360 (some tests, tools) has no
    // merge links to follow.
    let exists = match tx.backend() {
        crate::db::Backend::Sqlite => tx
            .fetch(
                "SELECT name FROM sqlite_master WHERE name = 'rm_customer_360_links'",
                vec![],
                &[Col::Text],
            )
            .await?
            .len(),
        crate::db::Backend::Postgres => tx
            .fetch(
                "SELECT c.relname::text FROM pg_class c \
                 WHERE c.relname = 'rm_customer_360_links' AND pg_table_is_visible(c.oid)",
                vec![],
                &[Col::Text],
            )
            .await?
            .len(),
    };
    if exists == 0 {
        return Ok(all);
    }
    let mut queue = vec![customer.to_owned()];
    while let Some(survivor) = queue.pop() {
        let rows = tx
            .fetch(
                "SELECT key FROM rm_customer_360_links WHERE tenant = ? AND customer_id = ?",
                vec![tenant.into(), survivor.as_str().into()],
                &[Col::Text],
            )
            .await?;
        for key in rows.into_iter().filter_map(|mut r| r.remove(0).into_text()) {
            if let Some(merged) = key.strip_prefix("merged:")
                && all.insert(merged.to_owned())
            {
                queue.push(merged.to_owned());
            }
        }
    }
    Ok(all)
}

/// A document per entity of one stream category (an opportunity, a case), folded from its
/// own stream, naming the customer it belongs to so that customer's erasure can clear it.
pub trait EntityDoc: DocRow + Default {
    /// The stream category whose events fold into these documents.
    const CATEGORY: &'static str;
    fn fold(&mut self, event: &ProjectedEvent);
    fn customer_id(&self) -> Option<&EntityId>;
    fn erase_personal(&mut self);
}

/// Folds a batch into a table of [`EntityDoc`]s: loads the documents the batch touches (and
/// those of customers erased in it), applies every event in order, writes back what changed.
pub async fn apply_entity_docs<T: EntityDoc>(
    tx: &mut ReadTx,
    table: &str,
    events: &[Arc<ProjectedEvent>],
) -> Result<(), ProjectionError> {
    apply_entity_docs_with::<T>(tx, table, events, |doc, event| {
        if let Some(doc) = doc {
            doc.fold(event);
        }
    })
    .await
}

/// [`apply_entity_docs`] with the fold given: `step` sees every event of the batch in order,
/// with the document it folds into for events of `T`'s category (`None` for the others), so
/// a projection can keep what other events say (tenant settings) and use it while folding.
pub async fn apply_entity_docs_with<T: EntityDoc>(
    tx: &mut ReadTx,
    table: &str,
    events: &[Arc<ProjectedEvent>],
    mut step: impl FnMut(Option<&mut T>, &ProjectedEvent),
) -> Result<(), ProjectionError> {
    let mut keys: BTreeSet<Key> = BTreeSet::new();
    let mut erased: BTreeSet<Key> = BTreeSet::new();
    for event in events {
        let tenant = event.tenant.as_str();
        match &event.event {
            DomainEvent::CustomerErased(e) => {
                erased.insert((tenant.to_owned(), e.customer_id.as_str().to_owned()));
            }
            e if e.category() == T::CATEGORY => {
                keys.insert((tenant.to_owned(), e.entity_id().as_str().to_owned()));
            }
            _ => {}
        }
    }
    if keys.is_empty() && erased.is_empty() {
        return Ok(());
    }
    // Customers merged into an erased one are erased with it (their keys went with its).
    let mut with_merged: HashMap<Key, BTreeSet<String>> = HashMap::new();
    for key in &erased {
        let merged = merged_into(tx, &key.0, &key.1).await?;
        with_merged.insert(key.clone(), merged);
    }
    let everyone: BTreeSet<Key> = with_merged
        .iter()
        .flat_map(|((tenant, _), ids)| ids.iter().map(|id| (tenant.clone(), id.clone())))
        .collect();
    keys.extend(ids_of_customers(tx, table, &everyone).await?);
    let mut docs: HashMap<Key, T> = load_docs(tx, table, &keys).await?;
    let mut dirty = BTreeSet::new();
    for event in events {
        let tenant = event.tenant.as_str();
        if let DomainEvent::CustomerErased(e) = &event.event {
            let key = (tenant.to_owned(), e.customer_id.as_str().to_owned());
            let erased_ids = with_merged.get(&key);
            for (key, doc) in docs.iter_mut() {
                let erased_here = doc
                    .customer_id()
                    .is_some_and(|c| erased_ids.is_some_and(|ids| ids.contains(c.as_str())));
                if key.0 == tenant && erased_here {
                    doc.erase_personal();
                    dirty.insert(key.clone());
                }
            }
        } else if event.event.category() == T::CATEGORY {
            let key = (
                tenant.to_owned(),
                event.event.entity_id().as_str().to_owned(),
            );
            step(Some(docs.entry(key.clone()).or_default()), event);
            dirty.insert(key);
        } else {
            step(None, event);
        }
    }
    upsert_docs(
        tx,
        table,
        dirty.iter().filter_map(|k| docs.get_key_value(k)),
    )
    .await
}

/// `CREATE TABLE` text of a link table: `(tenant, key) → customer_id`.
pub const LINKS_TABLE: &str = "CREATE TABLE {t} (
    tenant TEXTKEY NOT NULL,
    key TEXTKEY NOT NULL,
    customer_id TEXTKEY NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT_ROWID";

/// Which customer an entity belongs to (`opportunity:<id>`, `case:<id>`, `lead:<id>`), and
/// which customer a merged customer went into (`merged:<id>`), for one batch: loaded for
/// the keys the batch needs, extended in memory, written back at the end.
#[derive(Debug, Default, Clone)]
pub struct Links {
    /// tenant → key → customer: looked up without building a key.
    map: HashMap<String, HashMap<String, String>>,
    new: BTreeMap<Key, String>,
}

impl Links {
    /// Loads `keys` from `table`, then follows `merged:` links of every customer found until
    /// no new customer appears.
    pub async fn load(
        tx: &mut ReadTx,
        table: &str,
        keys: BTreeSet<Key>,
    ) -> Result<Links, ProjectionError> {
        let mut links = Links::default();
        let mut wanted = keys;
        let mut seen = BTreeSet::new();
        while !wanted.is_empty() {
            let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (tenant, key) in &wanted {
                by_tenant.entry(tenant).or_default().push(key);
            }
            let mut next = BTreeSet::new();
            for (tenant, keys) in by_tenant {
                for (condition, keys) in in_clauses(tx.backend(), "key", &keys) {
                    let sql = format!(
                        "SELECT key, customer_id FROM {table} WHERE tenant = ? AND {condition}"
                    );
                    let mut args = vec![SqlValue::text(tenant)];
                    args.extend(keys);
                    for row in tx.fetch(&sql, args, &[Col::Text, Col::Text]).await? {
                        let mut row = row.into_iter();
                        let key = row.next().and_then(SqlValue::into_text).unwrap_or_default();
                        let customer = row.next().and_then(SqlValue::into_text).unwrap_or_default();
                        let merged = (tenant.to_owned(), merged_key(&customer));
                        if !seen.contains(&merged) && !wanted.contains(&merged) {
                            next.insert(merged);
                        }
                        links.insert(tenant, key, customer);
                    }
                }
            }
            seen.extend(std::mem::take(&mut wanted));
            wanted = next;
        }
        Ok(links)
    }

    pub fn get(&self, tenant: &str, key: &str) -> Option<&str> {
        self.map.get(tenant)?.get(key).map(String::as_str)
    }

    pub fn set(&mut self, tenant: &str, key: String, customer: &str) {
        self.insert(tenant, key.clone(), customer.to_owned());
        self.new
            .insert((tenant.to_owned(), key), customer.to_owned());
    }

    fn insert(&mut self, tenant: &str, key: String, customer: String) {
        match self.map.get_mut(tenant) {
            Some(keys) => {
                keys.insert(key, customer);
            }
            None => {
                self.map
                    .insert(tenant.to_owned(), HashMap::from([(key, customer)]));
            }
        }
    }

    /// The customer whose view `customer` now lives in: follows `merged:` links (at most 64,
    /// stopping on a cycle).
    pub fn resolve(&self, tenant: &str, customer: &str) -> String {
        if self.get(tenant, &merged_key(customer)).is_none() {
            return customer.to_owned();
        }
        self.chain(tenant, customer)
            .pop()
            .unwrap_or_else(|| customer.to_owned())
    }

    /// `customer` followed by every customer it was merged into, in order.
    pub fn chain(&self, tenant: &str, customer: &str) -> Vec<String> {
        let mut chain = vec![customer.to_owned()];
        let mut current = customer.to_owned();
        while chain.len() < 64 {
            match self.get(tenant, &merged_key(&current)) {
                Some(next) if !chain.iter().any(|c| c == next) => {
                    current = next.to_owned();
                    chain.push(current.clone());
                }
                _ => break,
            }
        }
        chain
    }

    /// Writes the links made in this batch.
    pub async fn flush(&mut self, tx: &mut ReadTx, table: &str) -> Result<(), ProjectionError> {
        let rows = std::mem::take(&mut self.new)
            .into_iter()
            .map(|((tenant, key), customer)| {
                vec![
                    SqlValue::Text(tenant),
                    SqlValue::Text(key),
                    SqlValue::Text(customer),
                ]
            })
            .collect();
        tx.insert_rows(
            table,
            &["tenant", "key", "customer_id"],
            rows,
            "ON CONFLICT (tenant, key) DO UPDATE SET customer_id = excluded.customer_id",
        )
        .await
    }
}

pub fn merged_key(customer: &str) -> String {
    format!("merged:{customer}")
}
