//! Operations (admin keys only): each read model's position, lag and state with any rebuild
//! in progress (`GET /v1/projections`), the audit tree's checkpoint and lag (`GET /healthz`)
//! and the tenant's signed tree head (`GET /v1/audit/head`), and the tenant's API keys
//! without their secrets (the key store: keys have no API route).

use axum::http::StatusCode;
use maud::{Markup, html};
use serde_json::Value;

use super::figures::{section, unavailable};
use crate::console::layout::{self, Nav, text};
use crate::console::{Console, Failure};
use crate::keys::Role;

/// `GET /console/operations`.
pub async fn operations(console: Console) -> Result<Markup, Failure> {
    if console.principal().role != Role::Admin {
        return Err(Failure {
            status: StatusCode::FORBIDDEN,
            detail: format!(
                "the operations page needs an admin key; this key has role {}",
                console.principal().role
            ),
        });
    }
    let (projections, head) = console.get_at("/v1/projections").await?;
    let health = section(console.get("/healthz").await)?;
    let signed = section(console.get("/v1/audit/head").await)?;
    let keys = console
        .state
        .keys
        .list(Some(&console.principal().tenant))
        .await
        .map_err(|e| Failure::internal(&e))?;
    let empty = Vec::new();
    let models = projections["projections"].as_array().unwrap_or(&empty);
    let now = chrono::Utc::now();
    Ok(layout::page(
        &console,
        Nav::Operations,
        "Operations",
        html! {
            p.note { "Positions are the shared log's (every tenant's events); the log's head is "
                strong #head { (head.map_or("—".to_owned(), |h| h.to_string())) } "." }
            h2 { "Read models" }
            div.scroll tabindex="0" role="region" aria-label="Read models" { table #read-models {
                caption { "Read models: checkpoint, lag behind the head, state" }
                thead { tr {
                    th scope="col" { "Read model" } th scope="col" .num { "Version" }
                    th scope="col" { "State" } th scope="col" .num { "Position" }
                    th scope="col" .num { "Lag" } th scope="col" { "Rebuild" }
                    th scope="col" .num { "Parked tenants" } th scope="col" { "Error" }
                } }
                tbody { @for model in models {
                    @let failing = model["error"].is_string() || model["parked"].is_object();
                    tr data-model=(model["name"].as_str().unwrap_or_default())
                        data-state=(model["state"].as_str().unwrap_or_default())
                        class=[failing.then_some("failing")] {
                        th scope="row" { (text(&model["name"])) }
                        td .num { (text(&model["version"])) }
                        td { (text(&model["state"])) }
                        td .num data-value=(model["position"]) { (text(&model["position"])) }
                        td .num data-value=(model["lag"]) { (text(&model["lag"])) }
                        td { @match model["rebuild_position"].as_u64() {
                            Some(at) => { "In progress, at " (at) }
                            None => "None",
                        } }
                        td .num { (text(&model["parked_tenants"])) }
                        td { @if failing {
                            strong { "Failing: " }
                            (text(&model["error"]))
                            @if let Some(parked) = model["parked"].as_object() {
                                " This tenant is parked at position " (text(&parked["position"]))
                                " (" (text(&parked["parked_events"])) " events waiting): " (text(&parked["error"]))
                            }
                        } @else { "—" } }
                    }
                } }
            } }
            h2 { "Audit tree" }
            @match &health {
                Err(failure) => (unavailable("audit-tree", failure)),
                Ok(health) => (audit_tree(health)),
            }
            @match &signed {
                Err(failure) => (unavailable("signed-head", failure)),
                Ok(head) => (signed_head(head)),
            }
            h2 { "API keys of tenant " (console.principal().tenant.as_str()) }
            div.scroll tabindex="0" role="region" aria-label="API keys" { table #keys {
                caption { "Keys (ids only: secrets are never stored in a readable form nor shown)" }
                thead { tr {
                    th scope="col" { "Key id" } th scope="col" { "Role" }
                    th scope="col" { "Personal data" } th scope="col" { "Label" }
                    th scope="col" { "Created" } th scope="col" { "Expires" }
                    th scope="col" { "Revoked" } th scope="col" { "Last used" }
                    th scope="col" { "State" }
                } }
                tbody { @for key in &keys {
                    @let state = if key.revoked_at.is_some() { "revoked" }
                        else if key.expired_at(now) { "expired" } else { "active" };
                    tr data-key=(key.key_id) data-state=(state) {
                        th scope="row" { code { (key.key_id) } }
                        td { (key.role.as_str()) }
                        td { (if key.personal_data { "reads" } else { "masked" }) }
                        td { (key.label.as_deref().unwrap_or("—")) }
                        td { (time(Some(key.created_at))) }
                        td { (time(key.expires_at)) }
                        td { (time(key.revoked_at)) }
                        td { (time(key.last_used_at)) }
                        td { (state) }
                    }
                } }
            } }
        },
    ))
}

fn audit_tree(health: &Value) -> Markup {
    let tree = &health["audit_tree"];
    html! {
        dl.figures #audit-tree {
            div { dt { "Covered up to position" } dd data-figure="audit_tree.position" data-value=(tree["position"]) { (text(&tree["position"])) } }
            div { dt { "Lag behind the head" } dd data-figure="audit_tree.lag" data-value=(tree["lag"]) { (text(&tree["lag"])) } }
            div { dt { "Service status" } dd data-figure="status" data-value=(health["status"].as_str().unwrap_or_default()) { (text(&health["status"])) } }
        }
    }
}

/// The tenant's signed tree head (`GET /v1/audit/head`): what an auditor keeps to check a
/// later store against.
fn signed_head(head: &Value) -> Markup {
    html! {
        dl.figures #signed-head {
            div { dt { "This tenant's events in the tree" } dd data-figure="tree_size" data-value=(head["tree_size"]) { (text(&head["tree_size"])) } }
            div { dt { "Root hash" } dd data-figure="root_hash" { code { (head["root_hash"].as_str().unwrap_or("—")) } } }
            div { dt { "Signed at" } dd { (text(&head["timestamp"])) } }
            div { dt { "Signing key id" } dd { code { (head["key_id"].as_str().unwrap_or("—")) } } }
        }
    }
}

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or("—".to_owned(), |t| {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    })
}
