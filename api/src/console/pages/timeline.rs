//! The auditor's timeline: every event touching a customer with its data, actor and source
//! (`GET /v1/customers/{id}/timeline`), in pages; each stream on the page with its hash
//! chain's verification (`GET /v1/verify?stream=`, for keys that may verify); and each
//! event's inclusion proof in the tenant's audit tree (`GET /v1/audit/inclusion`).

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::{entity_id, with_query};
use crate::console::layout::{self, Nav, label, text};
use crate::console::{Console, Failure};
use crate::keys::Role;

/// Events per page.
const PAGE: &str = "50";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineParams {
    after: Option<u64>,
    /// `desc` (newest first, the default) or `asc`.
    order: Option<String>,
}

/// What the page knows of a stream's chain.
#[derive(Debug, Clone, PartialEq)]
enum Chain {
    Intact,
    /// Broken; the first failure as the API names it.
    Broken(Value),
    /// The key may not verify (not an auditor).
    Unchecked,
}

impl Chain {
    fn status(&self) -> &'static str {
        match self {
            Chain::Intact => "intact",
            Chain::Broken(_) => "broken",
            Chain::Unchecked => "unchecked",
        }
    }
}

/// `GET /console/customers/{id}/timeline`.
pub async fn timeline(
    console: Console,
    Path(raw_id): Path<String>,
    params: Result<Query<TimelineParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, Failure> {
    let Query(params) = params.map_err(|e| Failure::bad_request(e.body_text()))?;
    let id = entity_id(&raw_id)?;
    let order = match params.order.as_deref() {
        None | Some("") | Some("desc") => "desc",
        Some("asc") => "asc",
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "order={other:?} is not one of \"asc\", \"desc\""
            )));
        }
    };
    let after = params.after.map(|a| a.to_string());
    let page = console
        .get(&with_query(
            &format!("/v1/customers/{}/timeline", id.as_str()),
            &[
                ("after", after.as_deref()),
                ("order", Some(order)),
                ("limit", Some(PAGE)),
            ],
        ))
        .await?;
    let entries = page["entries"].as_array().cloned().unwrap_or_default();
    let mut streams: BTreeMap<String, Chain> = BTreeMap::new();
    for entry in &entries {
        if let Some(stream) = entry["stream_id"].as_str() {
            streams.entry(stream.to_owned()).or_insert(Chain::Unchecked);
        }
    }
    let auditor = console.may(&[Role::Auditor]);
    if auditor {
        let checks = streams.keys().map(|stream| {
            let console = &console;
            async move {
                let answer = console
                    .get(&with_query("/v1/verify", &[("stream", Some(stream))]))
                    .await?;
                Ok::<_, Failure>(match answer["intact"].as_bool() {
                    Some(true) => Chain::Intact,
                    _ => Chain::Broken(answer["first_failure"].clone()),
                })
            }
        });
        let results = futures::future::join_all(checks).await;
        for (chain, result) in streams.values_mut().zip(results) {
            *chain = result?;
        }
    }
    let next = page["next_after"].as_u64().map(|after| {
        let after = after.to_string();
        with_query(
            &format!("/console/customers/{}/timeline", id.as_str()),
            &[("after", Some(&after)), ("order", Some(order))],
        )
    });
    let other_order = if order == "desc" { "asc" } else { "desc" };
    let broken = streams.values().any(|c| matches!(c, Chain::Broken(_)));
    Ok(layout::page(
        &console,
        Nav::Customers,
        &format!("Timeline of {}", id.as_str()),
        html! {
            p {
                a href=(format!("/console/customers/{}", id.as_str())) { "Back to the customer" }
                " · "
                a href=(with_query(&format!("/console/customers/{}/timeline", id.as_str()), &[("order", Some(other_order))])) {
                    @if order == "desc" { "Oldest first" } @else { "Newest first" }
                }
            }
            @if page["erased"].as_bool() == Some(true) {
                p .note { "This customer's personal data was erased: those fields read \"[erased]\"." }
            }
            section #verification aria-labelledby="verification-h" {
                h2 #verification-h { "Streams on this page" }
                @if broken {
                    p #error role="alert" { "A stream's hash chain does not verify: its stored events were altered after they were written." }
                }
                @if !auditor {
                    p .note { "This key's role may not verify chains (it needs role auditor or admin)." }
                }
                div.scroll { table #streams {
                    caption { "Hash-chain verification per stream" }
                    thead { tr { th scope="col" { "Stream" } th scope="col" { "Chain" } th scope="col" { "First failure" } } }
                    tbody { @for (stream, chain) in &streams {
                        tr data-stream=(stream) data-status=(chain.status()) class=[matches!(chain, Chain::Broken(_)).then_some("broken")] {
                            td { (stream) }
                            td { span class=(format!("status-{}", chain.status())) { (chain.status()) } }
                            td { @if let Chain::Broken(finding) = chain { (text(finding)) } }
                        }
                    } }
                } }
            }
            section aria-labelledby="events-h" {
                h2 #events-h { "Events" }
                @if entries.is_empty() {
                    p .empty #timeline { "No events on this page." }
                } @else {
                    div.scroll { table #timeline {
                        caption { "Events touching the customer, " @if order == "desc" { "newest first" } @else { "oldest first" } }
                        thead { tr {
                            th scope="col" .num { "Position" } th scope="col" { "Occurred" } th scope="col" { "Recorded" }
                            th scope="col" { "Event" } th scope="col" { "Stream" } th scope="col" { "Actor" }
                            th scope="col" { "Source" } th scope="col" { "Data" }
                            @if auditor { th scope="col" { "Proof" } }
                        } }
                        tbody { @for entry in &entries {
                            @let stream = entry["stream_id"].as_str().unwrap_or_default();
                            @let revision = entry["revision"].as_u64().unwrap_or_default();
                            @let chain_broken = matches!(streams.get(stream), Some(Chain::Broken(_)));
                            tr data-position=(text(&entry["position"])) data-stream=(stream) class=[chain_broken.then_some("broken")] {
                                td .num { (text(&entry["position"])) }
                                td { (text(&entry["occurred_at"])) }
                                td { (text(&entry["recorded_at"])) }
                                td { (text(&entry["event_type"])) }
                                td { (stream) " #" (revision) }
                                td { (text(&entry["actor"])) }
                                td { (text(&entry["source"])) }
                                td { details {
                                    summary { "Data" }
                                    pre.data { (serde_json::to_string_pretty(&entry["data"]).unwrap_or_default()) }
                                } }
                                @if auditor {
                                    td { a.proof href=(with_query("/console/proofs", &[("stream", Some(stream)), ("revision", Some(&revision.to_string()))])) {
                                        "Inclusion proof" span.sr { " of " (stream) " #" (revision) }
                                    } }
                                }
                            }
                        } }
                    } }
                }
            }
            @if let Some(next) = next {
                nav.pager aria-label="Pages" { a #next-page href=(next) { "Next events" } }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    stream: String,
    revision: u64,
}

/// `GET /console/proofs?stream=&revision=`: an event's inclusion proof in the tenant's audit
/// tree, as `GET /v1/audit/inclusion` gives it (role auditor).
pub async fn proof(
    console: Console,
    params: Result<Query<ProofParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, Failure> {
    let Query(params) = params.map_err(|e| Failure::bad_request(e.body_text()))?;
    let revision = params.revision.to_string();
    let answer = console
        .get(&with_query(
            "/v1/audit/inclusion",
            &[
                ("stream", Some(&params.stream)),
                ("revision", Some(&revision)),
            ],
        ))
        .await?;
    let members: Vec<(String, Value)> = answer
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(layout::page(
        &console,
        Nav::Customers,
        &format!("Inclusion proof of {} #{}", params.stream, params.revision),
        html! {
            p .note { "The event's leaf in the tenant's Merkle tree (RFC 9162) and the audit path to the tree's root; `crm-replay audit` or any RFC 9162 verifier checks it against a signed tree head." }
            dl #proof {
                @for (name, value) in &members {
                    dt { (label(name)) }
                    dd {
                        @if let Some(items) = value.as_array() {
                            ol { @for item in items { li { code { (text(item)) } } } }
                        } @else {
                            code { (text(value)) }
                        }
                    }
                }
            }
        },
    ))
}
