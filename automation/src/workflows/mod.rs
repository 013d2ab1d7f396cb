//! Workflow rules (issue 20): the worker that acts on them (`worker`), the facts schedules
//! are relative to (`facts`, `schedules`), its tables (`tables`), webhook calls (`calls`) and
//! the dry run (`dry_run`). What a rule is and does is `crm_core::automation::rule`.

pub mod calls;
pub mod dry_run;
pub mod facts;
pub mod schedules;
pub mod tables;
pub mod worker;

pub use dry_run::{DryFiring, DryRun, dry_run};
pub use worker::{Context, WorkerOptions, Workflows, spawn};
