//! Pipeline: deals by stage (a chart and a table), the weighted forecast by close month (a
//! chart and the same figures as a table), win rate and sales cycle, of every owner or of
//! one: `GET /v1/pipeline?owner=`.

use axum::extract::Query;
use crm_core::catalog::values::Stage;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::Value;

use super::figures::{Totals, approximate, percent};
use super::with_query;
use crate::console::charts::{self, Bar};
use crate::console::layout::{self, Nav, text};
use crate::console::{Console, Failure};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineParams {
    /// Only this sales rep's deals.
    owner: Option<String>,
    /// The currency the forecast chart draws (the table shows every currency); the first
    /// one of the forecast when absent.
    currency: Option<String>,
}

/// One row of the forecast table: a close month in one currency, its categories summed.
#[derive(Debug, Default)]
struct MonthRow {
    month: String,
    currency: String,
    count: i64,
    amount: Totals,
    weighted: Totals,
    categories: Vec<String>,
}

/// The forecast lines (per month, category and currency) summed per month and currency,
/// in the API's order of months.
fn months(forecast: &[Value]) -> Vec<MonthRow> {
    let mut rows: Vec<MonthRow> = Vec::new();
    for line in forecast {
        let month = line["close_month"].as_str().unwrap_or("—").to_owned();
        let currency = line["weighted"]["currency"]
            .as_str()
            .unwrap_or("—")
            .to_owned();
        let index = match rows
            .iter()
            .position(|r| r.month == month && r.currency == currency)
        {
            Some(index) => index,
            None => {
                rows.push(MonthRow {
                    month,
                    currency,
                    ..MonthRow::default()
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[index];
        row.count += line["count"].as_i64().unwrap_or(0);
        row.amount.add(&line["amount"]);
        row.weighted.add(&line["weighted"]);
        if let Some(category) = line["forecast_category"].as_str()
            && !row.categories.iter().any(|c| c == category)
        {
            row.categories.push(category.to_owned());
        }
    }
    rows
}

/// The stage lines in the pipeline's order (prospecting first, closed last), currencies
/// in the API's order within a stage; stages the catalog does not know go last.
fn in_stage_order(by_stage: &[Value]) -> Vec<Value> {
    let mut lines = by_stage.to_vec();
    lines.sort_by_key(|line| {
        let stage = line["stage"].as_str().unwrap_or_default();
        Stage::ALL
            .iter()
            .position(|known| known.as_str() == stage)
            .unwrap_or(Stage::ALL.len())
    });
    lines
}

/// Deals per stage over every currency, in the order of `by_stage`.
fn stage_counts(by_stage: &[Value]) -> Vec<Bar> {
    let mut bars: Vec<Bar> = Vec::new();
    for line in by_stage {
        let stage = line["stage"].as_str().unwrap_or("—");
        let count = line["count"].as_f64().unwrap_or(0.0);
        match bars.iter_mut().find(|bar| bar.label == stage) {
            Some(bar) => bar.value += count,
            None => bars.push(Bar::new(stage, count)),
        }
    }
    bars
}

/// `GET /console/pipeline`.
pub async fn pipeline(
    console: Console,
    params: Result<Query<PipelineParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, Failure> {
    let Query(params) = params.map_err(|e| Failure::bad_request(e.body_text()))?;
    let owner = params
        .owner
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty());
    let summary = console
        .get(&with_query("/v1/pipeline", &[("owner", owner)]))
        .await?;
    let empty = Vec::new();
    let by_stage = &in_stage_order(summary["by_stage"].as_array().unwrap_or(&empty));
    let forecast = months(summary["forecast"].as_array().unwrap_or(&empty));
    let currencies: Vec<&str> = {
        let mut seen: Vec<&str> = Vec::new();
        for row in &forecast {
            if !seen.contains(&row.currency.as_str()) {
                seen.push(&row.currency);
            }
        }
        seen
    };
    let chosen = params
        .currency
        .as_deref()
        .filter(|c| currencies.contains(c))
        .or(currencies.first().copied())
        .unwrap_or("");
    let funnel_svg = charts::bar_chart(
        "funnel-svg",
        "Deals per stage",
        "Deals",
        &stage_counts(by_stage),
    );
    let forecast_bars: Vec<Bar> = forecast
        .iter()
        .filter(|row| row.currency == chosen)
        .map(|row| {
            let weighted = row.weighted.amount(chosen).unwrap_or_default();
            Bar::new(&row.month, weighted.parse().unwrap_or(0.0))
        })
        .collect();
    let forecast_svg = charts::bar_chart(
        "forecast-svg",
        &format!("Weighted forecast by close month, {chosen}"),
        &format!("Weighted amount, {chosen}"),
        &forecast_bars,
    );
    let title = match owner {
        Some(owner) => format!("Pipeline of {owner}"),
        None => "Pipeline".to_owned(),
    };
    Ok(layout::page(
        &console,
        Nav::Pipeline,
        &title,
        html! {
            form #pipeline-filter .filters method="get" action="/console/pipeline" {
                label for="owner" { "Owner (sales rep id)"
                    input #owner name="owner" type="text" value=[owner];
                }
                @if currencies.len() > 1 {
                    label for="currency" { "Chart currency"
                        select #currency name="currency" {
                            @for code in &currencies {
                                option value=(code) selected[*code == chosen] { (code) }
                            }
                        }
                    }
                }
                button #pipeline-apply type="submit" { "Show" }
            }
            h2 { "Deals by stage" }
            figure #funnel-chart {
                figcaption { "Deals per stage, open and closed (all currencies); the table below holds the amounts." }
                (PreEscaped(funnel_svg))
            }
            @if by_stage.is_empty() {
                p #funnel .empty { "No deal." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Deals by stage" { table #funnel {
                    caption { "Deals by stage and currency" }
                    thead { tr {
                        th scope="col" { "Stage" } th scope="col" { "Currency" }
                        th scope="col" .num { "Deals" } th scope="col" .num { "Amount" }
                        th scope="col" .num { "Weighted" }
                    } }
                    tbody { @for line in by_stage {
                        tr data-stage=(line["stage"].as_str().unwrap_or_default())
                            data-currency=(line["amount"]["currency"].as_str().unwrap_or_default()) {
                            th scope="row" { (text(&line["stage"])) }
                            td { (text(&line["amount"]["currency"])) }
                            td .num data-count=(line["count"]) { (text(&line["count"])) }
                            td .num data-value=(line["amount"]["amount"].as_str().unwrap_or_default()) { (text(&line["amount"]["amount"])) }
                            td .num data-value=(line["weighted"]["amount"].as_str().unwrap_or_default()) { (text(&line["weighted"]["amount"])) }
                        }
                    } }
                } }
            }
            h2 { "Forecast by close month" }
            figure #forecast-chart {
                figcaption { "Weighted amount (amount × stage probability) of deals by expected close month"
                    @if !chosen.is_empty() { ", " (chosen) } "." }
                (PreEscaped(forecast_svg))
            }
            @if forecast.is_empty() {
                p #forecast .empty { "No deal with an expected close date." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Forecast by close month" { table #forecast {
                    caption { "Forecast by close month and currency (the chart's data)" }
                    thead { tr {
                        th scope="col" { "Close month" } th scope="col" { "Currency" }
                        th scope="col" .num { "Deals" } th scope="col" .num { "Amount" }
                        th scope="col" .num { "Weighted" } th scope="col" { "Categories" }
                    } }
                    tbody { @for row in &forecast {
                        @let amount = row.amount.amount(&row.currency);
                        @let weighted = row.weighted.amount(&row.currency);
                        tr data-month=(row.month) data-currency=(row.currency) {
                            th scope="row" { (row.month) }
                            td { (row.currency) }
                            td .num data-count=(row.count) { (row.count) }
                            td .num data-value=[amount.as_deref()] { (amount.as_deref().unwrap_or("—")) }
                            td .num .weighted data-value=[weighted.as_deref()] { (weighted.as_deref().unwrap_or("—")) }
                            td { (row.categories.join(", ")) }
                        }
                    } }
                } }
            }
            h2 { "Win rate and sales cycle" }
            div.scroll tabindex="0" role="region" aria-label="Win rate" { table #win-rate {
                caption { "Closed deals" }
                thead { tr {
                    th scope="col" .num { "Open" } th scope="col" .num { "Won" }
                    th scope="col" .num { "Lost" } th scope="col" .num { "Win rate" }
                    th scope="col" .num { "Average cycle" }
                } }
                tbody { tr {
                    td .num data-value=(summary["open"]) { (text(&summary["open"])) }
                    td .num data-value=(summary["won"]) { (text(&summary["won"])) }
                    td .num data-value=(summary["lost"]) { (text(&summary["lost"])) }
                    td .num data-value=(summary["win_rate"]) {
                        @match summary["win_rate"].as_f64() {
                            Some(rate) => (percent(rate)),
                            None => "— (no deal closed)",
                        }
                    }
                    td .num data-value=(summary["average_cycle_days"]) {
                        @match summary["average_cycle_days"].as_f64() {
                            Some(days) => (format!("{days:.1} days")),
                            None => "—",
                        }
                    }
                } }
            } }
            @if let Some(attainment) = summary["attainment"].as_array() {
                (layout::table("attainment", "Quota attainment", attainment, &[
                    ("Period", "period"), ("Start", "start"), ("Quota", "quota"),
                    ("Won", "won"), ("Attainment", "attainment"),
                ]))
            }
            p.note { "Amounts are never summed across currencies. Charts draw approximate values; the tables hold the exact amounts. "
                (approximate_note(by_stage)) }
        },
    ))
}

/// Says how many currencies the page holds, so a reader knows a chart shows one of them.
fn approximate_note(by_stage: &[Value]) -> String {
    let mut codes: Vec<&str> = by_stage
        .iter()
        .filter_map(|line| line["amount"]["currency"].as_str())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let total: f64 = by_stage.iter().map(|l| approximate(&l["amount"])).sum();
    match codes.len() {
        0 => String::new(),
        1 => format!("Open amount about {} {}.", charts::compact(total), codes[0]),
        n => format!("Open deals in {n} currencies: {}.", codes.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forecast_lines_are_summed_per_month_and_currency() {
        let line = |month: &str, category: &str, amount: &str, currency: &str| {
            json!({"close_month": month, "forecast_category": category, "count": 1,
                   "amount": {"amount": amount, "currency": currency},
                   "weighted": {"amount": amount, "currency": currency}})
        };
        let rows = months(&[
            line("2026-06", "commit", "10.10", "EUR"),
            line("2026-06", "pipeline", "0.20", "EUR"),
            line("2026-06", "pipeline", "7", "JPY"),
            line("2026-07", "commit", "1.00", "EUR"),
        ]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].weighted.amount("EUR").as_deref(), Some("10.30"));
        assert_eq!(rows[0].count, 2);
        assert_eq!(rows[0].categories, ["commit", "pipeline"]);
        assert_eq!(rows[1].currency, "JPY");
        assert_eq!(rows[2].month, "2026-07");
        let bars = stage_counts(&[
            json!({"stage": "Proposal", "count": 2}),
            json!({"stage": "Proposal", "count": 1}),
            json!({"stage": "Negotiation", "count": 4}),
        ]);
        assert_eq!(
            bars,
            [Bar::new("Proposal", 3.0), Bar::new("Negotiation", 4.0)]
        );
    }
}
