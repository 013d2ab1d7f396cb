//! Automation's pure parts (issue 20): the filter language webhook subscriptions and workflow
//! triggers share ([`condition`]). No I/O here; the delivery and rule workers live in
//! `crm-automation`.

pub mod condition;
pub mod rule;
