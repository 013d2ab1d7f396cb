//! The [`Projection`] trait: a deterministic fold of the log into read-model tables.
//!
//! A projection owns its tables. They exist once per *generation*: the runner writes the
//! physical tables `<name>_g<generation>`, and readers query the view `<name>`, which points
//! at the live generation. A rebuild fills the next generation beside the live one and
//! repoints the views in one transaction (blue/green).

use std::collections::HashMap;
use std::sync::Arc;

use crate::db::ReadTx;
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;

/// One table a projection owns.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    /// The name readers use (a view on the live generation), e.g. `rm_customer_360`.
    pub name: &'static str,
    /// `CREATE TABLE {t} (...)`; `{t}` is replaced by the physical name. `TEXTKEY` is text
    /// that sorts bytewise on both backends.
    pub create: &'static str,
    /// `CREATE INDEX {t}_... ON {t} (...)` statements.
    pub indexes: &'static [&'static str],
}

/// The physical names of one generation of a projection's tables.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    names: HashMap<&'static str, String>,
}

impl Tables {
    pub fn new(defs: &[TableDef], generation: i64) -> Tables {
        Tables {
            names: defs
                .iter()
                .map(|def| (def.name, physical_name(def.name, generation)))
                .collect(),
        }
    }

    /// The physical table behind `name` in this generation; `name` itself if unknown (a
    /// programming error that the database then reports as a missing table).
    pub fn get<'a>(&'a self, name: &'a str) -> &'a str {
        self.names.get(name).map_or(name, String::as_str)
    }
}

/// The physical table of `name` in `generation`.
pub fn physical_name(name: &str, generation: i64) -> String {
    format!("{name}_g{generation}")
}

/// A read model built from the log.
///
/// `apply` must be deterministic: the same events give the same rows, whatever the batch
/// boundaries, and it never reads the wall clock. It writes only through `tx`, which the
/// runner commits together with the new checkpoint.
#[async_trait::async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug + 'static {
    /// Stable name, also the key of its checkpoint, e.g. `customer_360`.
    fn name(&self) -> &'static str;

    /// Raised whenever the tables or the fold change: a stored generation with another
    /// version is rebuilt blue/green on start.
    fn version(&self) -> i64;

    fn tables(&self) -> &'static [TableDef];

    /// Folds `events` (in position order, all above the checkpoint) into `tables`.
    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[Arc<ProjectedEvent>],
    ) -> Result<(), ProjectionError>;
}
