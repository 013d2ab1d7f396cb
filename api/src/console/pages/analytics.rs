//! Analytics in one currency: the RFM grid (customers by recency and frequency score) and
//! the segments, cohort retention as a heat map table (each cell says its rate in words and
//! carries a background class by bucket), customers per lifecycle stage, and the 80/20
//! (Pareto) curve of revenue: `GET /v1/analytics/{rfm,cohorts,lifecycle,profitability}`.

use axum::extract::Query;
use crm_core::money::currency::Currency;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::Value;

use super::figures::{percent, section, unavailable};
use super::with_query;
use crate::console::charts::{self, ParetoPoint};
use crate::console::layout::{self, Nav, label, text};
use crate::console::{Console, Failure};

/// The currency shown when none is asked for.
const DEFAULT_CURRENCY: &str = "EUR";
/// Customers per RFM page read, and the most pages read for the grid.
const RFM_PAGE: &str = "1000";
const RFM_PAGES: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsParams {
    /// ISO 4217 code: money is never summed across currencies.
    currency: Option<String>,
}

/// The heat-map class of a retention rate (0..=1): five buckets, so the rate's text, not
/// the colour, carries the figure.
pub fn heat_bucket(rate: f64) -> &'static str {
    match rate {
        r if !r.is_finite() || r <= 0.0 => "heat-0",
        r if r < 0.25 => "heat-1",
        r if r < 0.5 => "heat-2",
        r if r < 0.75 => "heat-3",
        _ => "heat-4",
    }
}

/// Customers per (R, F) score, 5 × 5, from RFM items (scores 1..=5; others are skipped).
fn rfm_grid(items: &[Value]) -> [[u64; 5]; 5] {
    let mut grid = [[0u64; 5]; 5];
    for item in items {
        let score = |name: &str| {
            item[name]
                .as_u64()
                .filter(|s| (1..=5).contains(s))
                .map(|s| (s - 1) as usize)
        };
        if let (Some(r), Some(f)) = (score("r"), score("f")) {
            grid[r][f] += 1;
        }
    }
    grid
}

/// The Pareto curve of the deciles of `GET /v1/analytics/profitability`: after each decile,
/// the share of customers counted so far and their cumulative share of revenue.
fn pareto_points(deciles: &[Value]) -> Vec<ParetoPoint> {
    let total: u64 = deciles.iter().filter_map(|d| d["customers"].as_u64()).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut counted = 0u64;
    let mut points = vec![ParetoPoint {
        customers: 0.0,
        value: 0.0,
    }];
    for decile in deciles {
        counted += decile["customers"].as_u64().unwrap_or(0);
        points.push(ParetoPoint {
            customers: counted as f64 / total as f64,
            value: decile["cumulative_share"].as_f64().unwrap_or(0.0),
        });
    }
    points
}

/// `GET /console/analytics`.
pub async fn analytics(
    console: Console,
    params: Result<Query<AnalyticsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, Failure> {
    let Query(params) = params.map_err(|e| Failure::bad_request(e.body_text()))?;
    let currency = params
        .currency
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_CURRENCY)
        .to_ascii_uppercase();
    // A code the API would refuse fails the page once, not each of its sections.
    Currency::parse(&currency)
        .map_err(|e| Failure::bad_request(format!("currency={currency:?}: {e}")))?;
    let with_currency = |path: &str| with_query(path, &[("currency", Some(&currency))]);
    // The four reports are independent: asked at once.
    let cohorts_path = with_currency("/v1/analytics/cohorts");
    let profitability_path = with_currency("/v1/analytics/profitability");
    let (lifecycle, rfm, cohorts, profitability) = tokio::join!(
        console.get("/v1/analytics/lifecycle"),
        read_rfm(&console, &currency),
        console.get(&cohorts_path),
        console.get(&profitability_path),
    );
    let lifecycle = section(lifecycle)?;
    let rfm = section(rfm)?;
    let cohorts = section(cohorts)?;
    let profitability = section(profitability)?;
    Ok(layout::page(
        &console,
        Nav::Analytics,
        &format!("Analytics, {currency}"),
        html! {
            form #analytics-filter .filters method="get" action="/console/analytics" {
                label for="currency" { "Currency (ISO 4217)"
                    input #currency name="currency" type="text" value=(currency)
                        maxlength="3" pattern="[A-Za-z]{3}" autocomplete="off";
                }
                button #analytics-apply type="submit" { "Show" }
            }
            p.note { "Evaluated as of the start of today (UTC), from the log." }
            h2 { "Lifecycle" }
            @match &lifecycle {
                Err(failure) => (unavailable("lifecycle", failure)),
                Ok(report) => (lifecycle_table(report)),
            }
            h2 { "RFM" }
            @match &rfm {
                Err(failure) => (unavailable("rfm-grid", failure)),
                Ok(report) => (rfm_tables(report)),
            }
            h2 { "Cohort retention" }
            @match &cohorts {
                Err(failure) => (unavailable("cohorts", failure)),
                Ok(report) => (cohort_table(report)),
            }
            h2 { "Revenue concentration (80/20)" }
            @match &profitability {
                Err(failure) => (unavailable("pareto", failure)),
                Ok(report) => (pareto_section(report, &currency)),
            }
        },
    ))
}

/// The RFM report with every page of its customers (up to [`RFM_PAGES`] pages), items
/// joined into one list; `truncated` set when pages were left.
async fn read_rfm(console: &Console, currency: &str) -> Result<Value, Failure> {
    let mut after: Option<String> = None;
    let mut report = Value::Null;
    let mut items: Vec<Value> = Vec::new();
    for _ in 0..RFM_PAGES {
        let page = console
            .get(&with_query(
                "/v1/analytics/rfm",
                &[
                    ("currency", Some(currency)),
                    ("limit", Some(RFM_PAGE)),
                    ("after", after.as_deref()),
                ],
            ))
            .await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        after = page["next_after"].as_str().map(str::to_owned);
        report = page;
        if after.is_none() {
            break;
        }
    }
    report["items"] = Value::Array(items);
    report["truncated"] = Value::Bool(after.is_some());
    Ok(report)
}

fn lifecycle_table(report: &Value) -> Markup {
    let empty = Vec::new();
    let stages = report["stages"].as_array().unwrap_or(&empty);
    html! {
        div.scroll tabindex="0" role="region" aria-label="Lifecycle stages" { table #lifecycle {
            caption { "Customers per lifecycle stage (" (text(&report["customers"])) " customers)" }
            thead { tr { th scope="col" { "Stage" } th scope="col" .num { "Customers" } } }
            tbody { @for stage in stages {
                tr data-stage=(stage["stage"].as_str().unwrap_or_default()) {
                    th scope="row" { (label(stage["stage"].as_str().unwrap_or_default())) }
                    td .num data-value=(stage["customers"]) { (text(&stage["customers"])) }
                }
            } }
        } }
    }
}

fn rfm_tables(report: &Value) -> Markup {
    let empty = Vec::new();
    let items = report["items"].as_array().unwrap_or(&empty);
    let grid = rfm_grid(items);
    let segments = report["segments"].as_array().unwrap_or(&empty);
    if report["customers"].as_u64() == Some(0) {
        return html! { p #rfm-grid .empty { "No customer bought in this currency." } };
    }
    html! {
        div.scroll tabindex="0" role="region" aria-label="RFM grid" { table #rfm-grid {
            caption { "Customers by recency score (rows) and frequency score (columns), 5 the best; "
                (text(&report["customers"])) " customers" }
            thead { tr {
                th scope="col" { "Recency score / frequency score" }
                @for f in 1..=5 { th scope="col" .num { "F " (f) } }
            } }
            tbody { @for r in (1..=5usize).rev() {
                tr data-r=(r) {
                    th scope="row" { "R " (r) }
                    @for f in 1..=5usize {
                        td .num data-r=(r) data-f=(f) { (grid[r - 1][f - 1]) }
                    }
                }
            } }
        } }
        @if report["truncated"].as_bool() == Some(true) {
            p.note { "The grid counts the first " (items.len()) " customers by id." }
        }
        div.scroll tabindex="0" role="region" aria-label="RFM segments" { table #rfm-segments {
            caption { "Customers per RFM segment" }
            thead { tr { th scope="col" { "Segment" } th scope="col" .num { "Customers" } } }
            tbody { @for segment in segments {
                tr data-segment=(segment["segment"].as_str().unwrap_or_default()) {
                    th scope="row" { (label(segment["segment"].as_str().unwrap_or_default())) }
                    td .num { (text(&segment["customers"])) }
                }
            } }
        } }
    }
}

/// Cohorts and months the heat map shows at most: the latest cohorts, their first months
/// (`GET /v1/analytics/cohorts` has them all).
const HEAT_MAP_COHORTS: usize = 24;
const HEAT_MAP_MONTHS: usize = 24;

fn cohort_table(report: &Value) -> Markup {
    let empty = Vec::new();
    let all = report["cohorts"].as_array().unwrap_or(&empty);
    let cohorts = &all[all.len().saturating_sub(HEAT_MAP_COHORTS)..];
    let longest = cohorts
        .iter()
        .filter_map(|c| c["months"].as_array().map(Vec::len))
        .max()
        .unwrap_or(0);
    let width = longest.min(HEAT_MAP_MONTHS);
    html! {
        @if cohorts.is_empty() {
            p #cohorts .empty { "No customer bought in this currency." }
        } @else {
            div.scroll tabindex="0" role="region" aria-label="Cohort retention" { table #cohorts .heatmap {
                caption { "Share of each first-purchase cohort buying again, month by month (month 0: the cohort's own)" }
                thead { tr {
                    th scope="col" { "Cohort" } th scope="col" .num { "Customers" }
                    @for month in 0..width { th scope="col" .num { "Month " (month) } }
                } }
                tbody { @for cohort in cohorts {
                    @let months = cohort["months"].as_array().unwrap_or(&empty);
                    tr data-cohort=(cohort["cohort"].as_str().unwrap_or_default()) {
                        th scope="row" { (text(&cohort["cohort"])) }
                        td .num { (text(&cohort["customers"])) }
                        @for index in 0..width {
                            @match months.get(index) {
                                Some(month) => {
                                    @let rate = month["retention"].as_f64().unwrap_or(0.0);
                                    td class=(format!("num {}", heat_bucket(rate))) data-month=(index)
                                        data-value=(month["retention"])
                                        title=(format!("{} active", text(&month["active"]))) {
                                        (percent(rate))
                                    }
                                }
                                None => td .num .heat-none { "—" },
                            }
                        }
                    }
                } }
            } }
            @if all.len() > cohorts.len() || longest > width {
                p.note { "The latest " (cohorts.len()) " of " (all.len()) " cohorts, their first "
                    (width) " months; GET /v1/analytics/cohorts has every cohort and month." }
            }
            p.note { "Shading: none for 0 %, then darker for under 25 %, under 50 %, under 75 %, and 75 % or more; every cell states its rate." }
        }
    }
}

fn pareto_section(report: &Value, currency: &str) -> Markup {
    let empty = Vec::new();
    let deciles = report["deciles"].as_array().unwrap_or(&empty);
    let points = pareto_points(deciles);
    let svg = charts::pareto_chart(
        "pareto-svg",
        &format!("Cumulative share of revenue by share of customers, {currency}"),
        &points,
    );
    let top = report["top_20_percent_share"].as_f64();
    html! {
        figure #pareto-chart {
            figcaption {
                "Customers ranked by net revenue: the share of revenue the top share of customers holds"
                @if let Some(top) = top.filter(|_| !points.is_empty()) { "; the top 20 % hold " strong #top-20 { (percent(top)) } }
                "."
            }
            (PreEscaped(svg))
        }
        @if !deciles.is_empty() {
            div.scroll tabindex="0" role="region" aria-label="Revenue by customer decile" { table #pareto {
                caption { "Revenue by customer decile, " (currency) " (the chart's data); total " (text(&report["revenue"])) }
                thead { tr {
                    th scope="col" { "Decile" } th scope="col" .num { "Customers" }
                    th scope="col" .num { "Revenue" } th scope="col" .num { "Share" }
                    th scope="col" .num { "Cumulative share" }
                } }
                tbody { @for decile in deciles {
                    tr data-decile=(decile["decile"]) {
                        th scope="row" { (text(&decile["decile"])) }
                        td .num { (text(&decile["customers"])) }
                        td .num { (text(&decile["revenue"])) }
                        td .num { (percent(decile["share"].as_f64().unwrap_or(0.0))) }
                        td .num { (percent(decile["cumulative_share"].as_f64().unwrap_or(0.0))) }
                    }
                } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retention_rates_fall_in_five_buckets() {
        assert_eq!(heat_bucket(0.0), "heat-0");
        assert_eq!(heat_bucket(f64::NAN), "heat-0");
        assert_eq!(heat_bucket(0.1), "heat-1");
        assert_eq!(heat_bucket(0.25), "heat-2");
        assert_eq!(heat_bucket(0.6), "heat-3");
        assert_eq!(heat_bucket(1.0), "heat-4");
    }

    #[test]
    fn the_rfm_grid_counts_customers_by_r_and_f() {
        let grid = rfm_grid(&[
            json!({"r": 5, "f": 1}),
            json!({"r": 5, "f": 1}),
            json!({"r": 1, "f": 5}),
            json!({"r": 0, "f": 9}),
        ]);
        assert_eq!(grid[4][0], 2);
        assert_eq!(grid[0][4], 1);
        assert_eq!(grid.iter().flatten().sum::<u64>(), 3);
    }

    #[test]
    fn deciles_make_a_pareto_curve_from_the_origin() {
        let deciles = [
            json!({"customers": 1, "cumulative_share": 0.8}),
            json!({"customers": 3, "cumulative_share": 1.0}),
        ];
        let points = pareto_points(&deciles);
        assert_eq!(points.len(), 3);
        assert_eq!(
            points[0],
            ParetoPoint {
                customers: 0.0,
                value: 0.0
            }
        );
        assert_eq!(
            points[1],
            ParetoPoint {
                customers: 0.25,
                value: 0.8
            }
        );
        assert_eq!(
            points[2],
            ParetoPoint {
                customers: 1.0,
                value: 1.0
            }
        );
        assert!(pareto_points(&[json!({"customers": 0})]).is_empty());
    }
}
