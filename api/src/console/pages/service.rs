//! Service: the open cases by due time with their SLA state in words (breached, warning,
//! on time, paused), the load per agent, and satisfaction (CSAT and NPS) over the last 90
//! days: `GET /v1/service/backlog` and `GET /v1/service/satisfaction`.

use chrono::{Duration, SecondsFormat, Utc};
use maud::{Markup, html};
use serde_json::Value;

use super::figures::{section, unavailable};
use super::with_query;
use crate::console::layout::{self, Nav, text};
use crate::console::{Console, Failure};

/// Open cases the page lists (the API's order: the most urgent due time first).
const BACKLOG_PAGE: &str = "200";
/// The window of the satisfaction figures, ending now.
const SATISFACTION_DAYS: i64 = 90;

/// A case's SLA state: `breached` (a clock is past its due time), `warning` (past its
/// warning time), else `ok`; and the words that say so, naming the clocks.
fn sla_state(line: &Value) -> (&'static str, String) {
    let clocks = |of: &Value| -> Vec<&'static str> {
        let mut named = Vec::new();
        if of["first_response"].as_bool() == Some(true) {
            named.push("first response");
        }
        if of["resolution"].as_bool() == Some(true) {
            named.push("resolution");
        }
        named
    };
    let breached = clocks(&line["breaches"]);
    if !breached.is_empty() {
        return ("breached", format!("Breached: {}", breached.join(", ")));
    }
    let warned = clocks(&line["warnings"]);
    if !warned.is_empty() {
        return (
            "warning",
            format!("Warning: {} due soon", warned.join(", ")),
        );
    }
    if line["paused"].as_bool() == Some(true) {
        return ("ok", "Paused (waiting on the customer)".to_owned());
    }
    ("ok", "On time".to_owned())
}

/// `GET /console/service`.
pub async fn service(console: Console) -> Result<Markup, Failure> {
    let backlog = console
        .get(&with_query(
            "/v1/service/backlog",
            &[("limit", Some(BACKLOG_PAGE))],
        ))
        .await?;
    let now = Utc::now();
    let from = (now - Duration::days(SATISFACTION_DAYS)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let to = (now + Duration::seconds(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let satisfaction = section(
        console
            .get(&with_query(
                "/v1/service/satisfaction",
                &[("from", Some(&from)), ("to", Some(&to))],
            ))
            .await,
    )?;
    let empty = Vec::new();
    let open = backlog["open"].as_array().unwrap_or(&empty);
    let agents: Vec<(String, Value)> = backlog["open_per_agent"]
        .as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let figures = [
        ("Open cases", "open_count"),
        ("First-response breaches", "first_response_breaches"),
        ("Resolution breaches", "resolution_breaches"),
        ("First-response warnings", "first_response_warnings"),
        ("Resolution warnings", "resolution_warnings"),
        ("Paused", "paused"),
        ("Unassigned", "unassigned"),
    ];
    Ok(layout::page(
        &console,
        Nav::Service,
        "Service",
        html! {
            p.note { "Judged at " (text(&backlog["evaluated_at"])) ". Breach counts cover every case, open or closed; warnings include breaches." }
            dl.figures #service-figures {
                @for (name, member) in figures {
                    div { dt { (name) } dd data-figure=(member) data-value=(backlog[member]) { (text(&backlog[member])) } }
                }
                div { dt { "First response, median" } dd { (duration(&backlog["first_response_median_seconds"])) } }
                div { dt { "First response, 90th percentile" } dd { (duration(&backlog["first_response_p90_seconds"])) } }
            }
            h2 { "Backlog" }
            @if open.is_empty() {
                p #backlog .empty { "No open case." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Case backlog" { table #backlog {
                    caption { "Open cases, the most urgent due time first (paused ones last)" }
                    thead { tr {
                        th scope="col" { "Case" } th scope="col" { "SLA" } th scope="col" { "Next due" }
                        th scope="col" { "Priority" } th scope="col" { "Agent" } th scope="col" { "Customer" }
                        th scope="col" { "Subject" } th scope="col" { "Opened" }
                    } }
                    tbody { @for line in open {
                        @let (state, words) = sla_state(line);
                        tr data-case=(line["case_id"].as_str().unwrap_or_default()) data-sla=(state) class=(format!("sla-{state}")) {
                            th scope="row" { (text(&line["case_id"])) }
                            td .sla { strong { (words) } }
                            td { (text(&line["next_due"])) }
                            td { (text(&line["priority"])) }
                            td { (text(&line["agent"])) }
                            td { @if let Some(id) = line["customer_id"].as_str() {
                                a href=(format!("/console/customers/{id}")) { (id) }
                            } @else { "—" } }
                            td { (text(&line["subject"])) }
                            td { (text(&line["opened_at"])) }
                        }
                    } }
                } }
                @if backlog["open_count"].as_u64().unwrap_or(0) > open.len() as u64 {
                    p.note { "The " (open.len()) " most urgent of " (text(&backlog["open_count"])) " open cases." }
                }
            }
            h2 { "Load per agent" }
            @if agents.is_empty() && backlog["unassigned"].as_u64().unwrap_or(0) == 0 {
                p #agents .empty { "No open case." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Load per agent" { table #agents {
                    caption { "Open cases per agent (the assignee, else the first responder)" }
                    thead { tr { th scope="col" { "Agent" } th scope="col" .num { "Open cases" } } }
                    tbody {
                        @for (agent, count) in &agents {
                            tr data-agent=(agent) { th scope="row" { (agent) } td .num { (text(count)) } }
                        }
                        tr data-agent="" { th scope="row" { "Unassigned" } td .num { (text(&backlog["unassigned"])) } }
                    }
                } }
            }
            h2 { "Satisfaction, last " (SATISFACTION_DAYS) " days" }
            @match &satisfaction {
                Err(failure) => (unavailable("satisfaction", failure)),
                Ok(report) => (satisfaction_tables(report)),
            }
        },
    ))
}

fn satisfaction_tables(report: &Value) -> Markup {
    let csat = &report["csat"];
    let nps = &report["nps"]["overall"];
    let mut rows: Vec<(String, &Value)> = vec![("Overall".to_owned(), &csat["overall"])];
    if let Some(by_agent) = csat["by_agent"].as_object() {
        rows.extend(
            by_agent
                .iter()
                .map(|(agent, f)| (format!("Agent {agent}"), f)),
        );
    }
    rows.push(("Cases without agent".to_owned(), &csat["without_agent"]));
    html! {
        div.scroll tabindex="0" role="region" aria-label="Satisfaction" { table #satisfaction {
            caption { "CSAT (scores 1 to 5; satisfied: 4 and 5) and NPS" }
            thead { tr {
                th scope="col" { "Scope" } th scope="col" .num { "Answers" }
                th scope="col" .num { "Satisfied" } th scope="col" .num { "CSAT" }
                th scope="col" .num { "Mean score" }
            } }
            tbody {
                @for (scope, figures) in &rows {
                    tr {
                        th scope="row" { (scope) }
                        td .num { (text(&figures["answers"])) }
                        td .num { (text(&figures["satisfied"])) }
                        td .num { @match figures["csat_percent"].as_f64() { Some(p) => (format!("{p:.1} %")), None => "—" } }
                        td .num { @match figures["mean_score"].as_f64() { Some(m) => (format!("{m:.2}")), None => "—" } }
                    }
                }
            }
        } }
        dl.figures #nps {
            div { dt { "NPS answers" } dd { (text(&nps["answers"])) } }
            div { dt { "Promoters / passives / detractors" } dd {
                (text(&nps["promoters"])) " / " (text(&nps["passives"])) " / " (text(&nps["detractors"])) } }
            div { dt { "NPS" } dd { @match nps["nps"].as_f64() { Some(n) => (format!("{n:.0}")), None => "—" } } }
        }
    }
}

/// Seconds as hours and minutes: `5400` → `1 h 30 min`.
fn duration(seconds: &Value) -> String {
    let Some(seconds) = seconds.as_f64().filter(|s| s.is_finite() && *s >= 0.0) else {
        return "—".to_owned();
    };
    let minutes = (seconds / 60.0).round() as u64;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sla_state_is_said_in_words() {
        let line = |breaches: Value, warnings: Value, paused: bool| json!({"breaches": breaches, "warnings": warnings, "paused": paused});
        let none = json!({"first_response": false, "resolution": false});
        let first = json!({"first_response": true, "resolution": false});
        let both = json!({"first_response": true, "resolution": true});
        assert_eq!(
            sla_state(&line(both.clone(), both.clone(), false)),
            (
                "breached",
                "Breached: first response, resolution".to_owned()
            )
        );
        assert_eq!(sla_state(&line(none.clone(), first, false)).0, "warning");
        assert_eq!(
            sla_state(&line(none.clone(), none.clone(), true)),
            ("ok", "Paused (waiting on the customer)".to_owned())
        );
        assert_eq!(sla_state(&line(none.clone(), none, false)).1, "On time");
        assert_eq!(duration(&json!(5400.0)), "1 h 30 min");
        assert_eq!(duration(&json!(120)), "2 min");
        assert_eq!(duration(&json!(null)), "—");
        assert_eq!(duration(&json!(-1)), "—");
    }
}
