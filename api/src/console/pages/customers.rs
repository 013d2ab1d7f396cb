//! Customers: the list with search and segment filters, and a customer's page (profile,
//! consents, figures, analytics, open deals, cases and tasks), live or as it stood at the
//! end of any past day, by when events occurred (business time) or by when they were
//! recorded (recording time): `GET /v1/customers/{id}` with `as_of` or `known_at`.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::{entity_id, with_query};
use crate::console::layout::{self, Nav, label, raw, text};
use crate::console::{Console, Failure};

/// Customers per page.
const PAGE: &str = "50";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    search: Option<String>,
    segment: Option<String>,
    owner: Option<String>,
    status: Option<String>,
    /// `low`, `medium` or `high`, with `currency`.
    churn_risk: Option<String>,
    currency: Option<String>,
    after: Option<String>,
}

/// `GET /console/customers`.
pub async fn list(
    console: Console,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let Query(params) = params.map_err(|e| Failure::bad_request(e.body_text()))?;
    let may_search = console.principal().reads_personal_data();
    let search = params.search.as_deref().map(str::trim);
    let filters = [
        ("search", search.filter(|_| may_search)),
        ("segment", params.segment.as_deref()),
        ("owner", params.owner.as_deref()),
        ("status", params.status.as_deref()),
        ("churn_risk", params.churn_risk.as_deref()),
        ("currency", params.currency.as_deref().map(str::trim)),
    ];
    let mut query: Vec<(&str, Option<&str>)> = filters.to_vec();
    query.push(("after", params.after.as_deref()));
    query.push(("limit", Some(PAGE)));
    // A filter the API refuses (a churn risk without its currency) is named above the form.
    let (listing, refused) = match console.get(&with_query("/v1/customers", &query)).await {
        Ok(listing) => (listing, None),
        Err(failure)
            if matches!(
                failure.status,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            ) =>
        {
            (Value::Null, Some(failure))
        }
        Err(failure) => return Err(failure),
    };
    let items = listing["items"].as_array().cloned().unwrap_or_default();
    let next = listing["next_after"].as_str().map(|after| {
        let mut pairs = filters.to_vec();
        pairs.push(("after", Some(after)));
        with_query("/console/customers", &pairs)
    });
    let status = params.status.as_deref().unwrap_or("");
    let churn = params.churn_risk.as_deref().unwrap_or("");
    let status_code = refused.as_ref().map_or(StatusCode::OK, |f| f.status);
    let page = layout::page(
        &console,
        Nav::Customers,
        "Customers",
        html! {
            @if let Some(refused) = &refused {
                p #error role="alert" { (refused.detail) }
            }
            form #customer-search .filters method="get" action="/console/customers" role="search" {
                label for="search" { "Name, email, phone or id"
                    @if may_search {
                        input #search name="search" type="search" value=[search];
                    } @else {
                        input #search name="search" type="search" disabled
                            aria-describedby="search-note";
                    }
                }
                label for="segment" { "Segment"
                    input #segment name="segment" type="text" value=[params.segment.as_deref()];
                }
                label for="owner" { "Owner"
                    input #owner name="owner" type="text" value=[params.owner.as_deref()];
                }
                label for="status" { "Status"
                    select #status name="status" {
                        @for (value, name) in [("", "Any"), ("active", "Active"), ("merged", "Merged"), ("erased", "Erased")] {
                            option value=(value) selected[status == value] { (name) }
                        }
                    }
                }
                label for="churn-risk" { "Churn risk (90 days)"
                    select #churn-risk name="churn_risk" {
                        @for (value, name) in [("", "Any"), ("low", "Low"), ("medium", "Medium"), ("high", "High")] {
                            option value=(value) selected[churn == value] { (name) }
                        }
                    }
                }
                label for="currency" { "in currency"
                    input #currency name="currency" type="text" size="4" maxlength="3" placeholder="EUR"
                        value=[params.currency.as_deref()];
                }
                button type="submit" { "Find" }
            }
            @if !may_search {
                p #search-note .note { "This key does not read personal data, so it may not search (a search by email would tell who is a customer). Filter by segment, owner or status." }
            }
            @if items.is_empty() {
                p .empty #customers { "No customer matches." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Customers by id" {
                    table #customers {
                        caption { "Customers by id" }
                        thead { tr {
                            th scope="col" { "Customer" } th scope="col" { "Name" } th scope="col" { "Email" }
                            th scope="col" { "Segment" } th scope="col" { "Owner" } th scope="col" { "Status" }
                            th scope="col" .num { "Interactions" } th scope="col" .num { "Orders" }
                            th scope="col" { "Last contact" } th scope="col" { "Last order" }
                        } }
                        tbody {
                            @for item in &items {
                                @let id = item["customer_id"].as_str().unwrap_or_default();
                                tr data-customer=(id) {
                                    td { a href=(format!("/console/customers/{id}")) { (id) } }
                                    td { (text(&item["name"])) }
                                    td { (text(&item["email"])) }
                                    td { (text(&item["segment"])) }
                                    td { (text(&item["owner"])) }
                                    td { (text(&item["status"])) }
                                    td .num { (text(&item["interactions"])) }
                                    td .num { (text(&item["orders"])) }
                                    td { (text(&item["last_contact_at"])) }
                                    td { (text(&item["last_order_at"])) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                nav.pager aria-label="Pages" { a #next-page href=(next) { "Next customers" } }
            }
        },
    );
    Ok((status_code, page).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerParams {
    /// `YYYY-MM-DD`: the page as it stood at the end of that day (UTC).
    date: Option<String>,
    /// `business` (events that occurred by then, the default) or `recorded` (events
    /// recorded by then).
    time: Option<String>,
}

/// Which moment a customer page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    Live,
    Occurred(NaiveDate),
    Recorded(NaiveDate),
}

impl Moment {
    fn parse(params: &CustomerParams) -> Result<Moment, Failure> {
        let date = match params.date.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                Failure::bad_request(format!("date={text:?} is not a date such as 2026-03-01"))
            })?),
        };
        let recorded = match params.time.as_deref() {
            None | Some("") | Some("business") => false,
            Some("recorded") => true,
            Some(other) => {
                return Err(Failure::bad_request(format!(
                    "time={other:?} is not one of \"business\", \"recorded\""
                )));
            }
        };
        Ok(match (date, recorded) {
            (None, _) => Moment::Live,
            (Some(date), false) => Moment::Occurred(date),
            (Some(date), true) => Moment::Recorded(date),
        })
    }

    /// The API's query parameter for this moment: the end of the day, UTC.
    fn cut(self) -> Option<(&'static str, String)> {
        let end = |d: NaiveDate| format!("{}T23:59:59Z", d.format("%Y-%m-%d"));
        match self {
            Moment::Live => None,
            Moment::Occurred(d) => Some(("as_of", end(d))),
            Moment::Recorded(d) => Some(("known_at", end(d))),
        }
    }

    fn date(self) -> Option<NaiveDate> {
        match self {
            Moment::Live => None,
            Moment::Occurred(d) | Moment::Recorded(d) => Some(d),
        }
    }
}

/// `GET /console/customers/{id}`.
pub async fn customer(
    console: Console,
    Path(raw_id): Path<String>,
    params: Result<Query<CustomerParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let Query(params) = params.map_err(|e| Failure::bad_request(e.body_text()))?;
    let id = entity_id(&raw_id)?;
    let moment = Moment::parse(&params)?;
    let cut = moment.cut();
    let path = format!("/v1/customers/{}", id.as_str());
    let answer = console
        .get_at(&with_query(
            &path,
            &[cut
                .as_ref()
                .map_or(("as_of", None), |(k, v)| (*k, Some(v.as_str())))],
        ))
        .await;
    let (view, position) = match answer {
        Ok(answer) => answer,
        // Before the customer's first event: the page stays, to pick another date.
        Err(failure) if moment != Moment::Live && failure.status == StatusCode::NOT_FOUND => {
            let body = html! {
                (as_of_form(id.as_str(), moment))
                (cut_note(moment, None))
                p #error role="alert" { (failure.detail) }
            };
            let page = layout::page(
                &console,
                Nav::Customers,
                &format!("Customer {}", id.as_str()),
                body,
            );
            return Ok((StatusCode::NOT_FOUND, page).into_response());
        }
        Err(failure) => return Err(failure),
    };
    let title = match view["name"].as_str() {
        Some(name) if name != "[redacted]" => format!("{name} ({})", id.as_str()),
        _ => format!("Customer {}", id.as_str()),
    };
    Ok(layout::page(
        &console,
        Nav::Customers,
        &title,
        html! {
            (as_of_form(id.as_str(), moment))
            (cut_note(moment, position))
            p { a #timeline-link href=(format!("/console/customers/{}/timeline", id.as_str())) { "Timeline: every event, with its verification" } }
            (profile(&view))
            (figures(&view))
            (consents(&view))
            (analytics(&view))
            section #deals aria-labelledby="deals-h" {
                h2 #deals-h { "Deals" }
                (layout::table("open-deals", "Open deals", as_items(&view["open_opportunities"]), &[("Deal", "opportunity_id"), ("Stage", "stage"), ("Amount", "amount")]))
                (layout::table("won-deals", "Won deals", as_items(&view["won_opportunities"]), &[("Deal", "opportunity_id"), ("Stage", "stage"), ("Amount", "amount")]))
            }
            section #cases aria-labelledby="cases-h" {
                h2 #cases-h { "Open cases" }
                (layout::table("open-cases", "Open cases", as_items(&view["open_cases"]), &[("Case", "case_id"), ("Priority", "priority"), ("Opened", "opened_at")]))
            }
            section #tasks aria-labelledby="tasks-h" {
                h2 #tasks-h { "Open tasks" }
                (generic_table("open-tasks", "Open tasks", as_items(&view["open_tasks"])))
            }
        },
    )
    .into_response())
}

/// The as-of picker: a day and the time axis.
fn as_of_form(id: &str, moment: Moment) -> Markup {
    let date_value = moment.date().map(|d| d.format("%Y-%m-%d").to_string());
    let recorded = matches!(moment, Moment::Recorded(_));
    html! {
        form #as-of .filters method="get" action=(format!("/console/customers/{id}")) {
            label for="as-of-date" { "As of the end of (UTC)"
                input #as-of-date name="date" type="date" value=[date_value.as_deref()];
            }
            label for="as-of-time" { "By"
                select #as-of-time name="time" {
                    option value="business" selected[!recorded] { "when events occurred (business time)" }
                    option value="recorded" selected[recorded] { "when events were recorded (recording time)" }
                }
            }
            button #as-of-apply type="submit" { "Show" }
            @if moment != Moment::Live {
                a href=(format!("/console/customers/{id}")) { "Back to now" }
            }
        }
    }
}

fn cut_note(moment: Moment, position: Option<u64>) -> Markup {
    let at = position
        .map(|p| format!(" (read at log position {p})"))
        .unwrap_or_default();
    match moment {
        Moment::Live => html! { p #cut .live { "Live: as the read models stand now" (at) "." } },
        Moment::Occurred(d) => html! { p #cut {
        "As it stood at the end of " strong { (d.format("%Y-%m-%d")) } " (UTC), folding the events that "
        strong { "occurred" } " by then (business time); figures evaluated then." } },
        Moment::Recorded(d) => html! { p #cut {
        "As it was recorded by the end of " strong { (d.format("%Y-%m-%d")) } " (UTC), folding the events the log "
        strong { "held" } " by then (recording time); figures evaluated then." } },
    }
}

fn as_items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A table whose columns are the scalar members of its first item.
fn generic_table(id: &str, caption: &str, items: &[Value]) -> Markup {
    let columns: Vec<(String, String)> = items
        .first()
        .and_then(Value::as_object)
        .map(|first| first.keys().map(|k| (label(k), k.clone())).collect())
        .unwrap_or_default();
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|(h, m)| (h.as_str(), m.as_str()))
        .collect();
    layout::table(id, caption, items, &columns)
}

fn profile(view: &Value) -> Markup {
    const MEMBERS: [&str; 11] = [
        "customer_id",
        "kind",
        "name",
        "email",
        "phone",
        "segment",
        "owner",
        "status",
        "first_seen_at",
        "merged_into",
        "erased_at",
    ];
    html! {
        section #profile aria-labelledby="profile-h" {
            h2 #profile-h { "Profile" }
            dl.figures {
                @for member in MEMBERS {
                    @if !view[member].is_null() {
                        div { dt { (label(member)) } dd data-figure=(member) data-value=(raw(&view[member])) { (text(&view[member])) } }
                    }
                }
                @if let Some(account) = view["contact_of"].as_object() {
                    div { dt { "Contact of" } dd { (text(&Value::Object(account.clone()))) } }
                }
                @if let Some(merged) = view["merged_ids"].as_array().filter(|m| !m.is_empty()) {
                    div { dt { "Merged duplicates" } dd { (text(&Value::Array(merged.clone()))) } }
                }
            }
        }
    }
}

/// Every figure with its dotted path into the API's answer (currency entries keyed by their
/// code), as `data-figure` and `data-value` carry them.
fn figure_paths(view: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for member in ["registered", "last_position"] {
        out.push((member.to_owned(), view[member].clone()));
    }
    for group in ["interactions", "orders"] {
        if let Some(object) = view[group].as_object() {
            for (name, value) in object {
                if value.is_array() || value.is_object() {
                    continue;
                }
                out.push((format!("{group}.{name}"), value.clone()));
            }
        }
    }
    if let Some(channels) = view["interactions"]["by_channel"].as_object() {
        for (channel, count) in channels {
            out.push((format!("interactions.by_channel.{channel}"), count.clone()));
        }
    }
    for entry in as_items(&view["orders"]["by_currency"]) {
        let Some(code) = entry["currency"].as_str() else {
            continue;
        };
        if let Some(object) = entry.as_object() {
            for (name, value) in object.iter().filter(|(name, _)| *name != "currency") {
                out.push((format!("orders.by_currency.{code}.{name}"), value.clone()));
            }
        }
    }
    out
}

fn figures(view: &Value) -> Markup {
    html! {
        section #figures aria-labelledby="figures-h" {
            h2 #figures-h { "Figures" }
            dl.figures {
                @for (path, value) in figure_paths(view) {
                    div {
                        dt { (label(&path.replace('.', " · "))) }
                        dd data-figure=(path) data-value=(raw(&value)) { (text(&value)) }
                    }
                }
            }
        }
    }
}

fn consents(view: &Value) -> Markup {
    let entries: Vec<(String, Value)> = view["consent"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    html! {
        section #consents aria-labelledby="consents-h" {
            h2 #consents-h { "Consents" }
            @if entries.is_empty() {
                p .empty { "No consent given or withdrawn." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Consent by channel" { table #consent-table {
                    caption { "Consent by channel" }
                    thead { tr { th scope="col" { "Channel" } th scope="col" { "Granted" } th scope="col" { "Since" } } }
                    tbody { @for (channel, consent) in &entries {
                        tr { td { (channel) } td { (text(&consent["granted"])) } td { (text(&consent["at"])) } }
                    } }
                } }
            }
            (satisfaction(&view["satisfaction"]))
        }
    }
}

/// The latest CSAT and NPS answers, when there are any.
fn satisfaction(satisfaction: &Value) -> Markup {
    let csat = &satisfaction["latest_csat"];
    let nps = &satisfaction["latest_nps"];
    html! {
        @if !csat.is_null() || !nps.is_null() {
            dl.figures #satisfaction {
                @if !csat.is_null() {
                    div { dt { "Latest CSAT (1–5)" }
                        dd data-figure="satisfaction.latest_csat.score" data-value=(raw(&csat["score"])) { (text(&csat["score"])) }
                        dd.note { "case " (text(&csat["case_id"])) ", " (text(&csat["at"]))
                            @if let Some(comment) = csat["comment"].as_str() { ": “" (comment) "”" } }
                    }
                }
                @if !nps.is_null() {
                    div { dt { "Latest NPS answer (0–10)" }
                        dd data-figure="satisfaction.latest_nps.score" data-value=(raw(&nps["score"])) { (text(&nps["score"])) }
                        dd.note { (text(&nps["at"]))
                            @if let Some(comment) = nps["comment"].as_str() { ": “" (comment) "”" } }
                    }
                }
            }
        }
    }
}

fn analytics(view: &Value) -> Markup {
    let analytics = &view["analytics"];
    html! {
        section #analytics aria-labelledby="analytics-h" {
            h2 #analytics-h { "Analytics" }
            dl.figures {
                div { dt { "Lifecycle stage" } dd data-figure="analytics.lifecycle_stage" data-value=(raw(&analytics["lifecycle_stage"])) { (text(&analytics["lifecycle_stage"])) } }
                div { dt { "Evaluated at" } dd { (text(&analytics["as_of"])) } }
            }
            (layout::table("analytics-currencies", "Segment, churn risk and lifetime value per currency", as_items(&analytics["currencies"]), &[
                ("Currency", "currency"), ("RFM code", "rfm_code"), ("RFM segment", "rfm_segment"),
                ("P(alive)", "p_alive"), ("Churn risk, 90 days", "churn_risk"), ("Churn bucket", "churn_bucket"),
                ("Expected purchases, 90 days", "expected_purchases"), ("Expected average value", "expected_average_value"),
                ("CLV, 12 months", "clv"),
            ]))
            @for currency in as_items(&analytics["currencies"]) {
                @if let Some(why) = currency["fit"]["unavailable"].as_str() {
                    p .note { (text(&currency["currency"])) ": no model figures: " (why) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_moment_is_a_day_and_a_time_axis() {
        let p = |date: Option<&str>, time: Option<&str>| CustomerParams {
            date: date.map(str::to_owned),
            time: time.map(str::to_owned),
        };
        assert_eq!(Moment::parse(&p(None, None)).ok(), Some(Moment::Live));
        assert_eq!(
            Moment::parse(&p(Some("2026-03-01"), None))
                .ok()
                .and_then(Moment::cut),
            Some(("as_of", "2026-03-01T23:59:59Z".to_owned()))
        );
        assert_eq!(
            Moment::parse(&p(Some("2026-03-01"), Some("recorded")))
                .ok()
                .and_then(Moment::cut),
            Some(("known_at", "2026-03-01T23:59:59Z".to_owned()))
        );
        let bad = Moment::parse(&p(Some("01/03/2026"), None)).err();
        assert!(bad.is_some_and(|f| f.detail.contains("date=")));
        let bad = Moment::parse(&p(Some("2026-03-01"), Some("later"))).err();
        assert!(bad.is_some_and(|f| f.detail.contains("time=")));
    }

    #[test]
    fn figures_are_named_by_their_path_in_the_answer() {
        let view = json!({
            "registered": true, "last_position": 7,
            "interactions": {"total": 3, "by_channel": {"email": 2}},
            "orders": {"count": 2, "by_currency": [{"currency": "EUR", "count": 2,
                "gross": {"amount": "10.00", "currency": "EUR"}}]}
        });
        let paths = figure_paths(&view);
        let find = |p: &str| {
            paths
                .iter()
                .find(|(path, _)| path == p)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(find("orders.count"), Some(json!(2)));
        assert_eq!(find("interactions.by_channel.email"), Some(json!(2)));
        assert_eq!(
            find("orders.by_currency.EUR.gross"),
            Some(json!({"amount": "10.00", "currency": "EUR"}))
        );
        assert_eq!(find("orders.by_currency.EUR.currency"), None);
    }
}
