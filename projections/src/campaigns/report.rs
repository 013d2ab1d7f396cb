//! A campaign's results (`GET /v1/campaigns`, `GET /v1/campaigns/{id}`), read from the
//! campaign, lead and pipeline read models at query time.
//!
//! Definitions:
//! - `members`: distinct customers and leads added; `responded`: distinct members with a
//!   positive response (every kind but `unsubscribed` and `bounced`); `response_rate` =
//!   responded / members (`null` without members); `responses`: every response by kind.
//! - `leads_generated`: leads whose capture named the campaign (`campaign_id`), erased ones
//!   left out; `leads_converted`: those converted.
//! - A *touch* is a customer's membership of a campaign or a positive response to it, at its
//!   business time (a lead's are not touches: its credit is `leads_generated`). The touches
//!   of a deal are its customer's touches, by any campaign, before the deal was won or lost
//!   (every touch for an open deal). Ties in time are ordered by log position.
//! - `opportunities_influenced`: deals (open, won or lost) with a touch of this campaign;
//!   `opportunities_won`: those won.
//! - `revenue_won`, per currency (never summed across currencies), under three attribution
//!   models over each won deal's touches: `first_touch` (the whole amount to the campaign of
//!   the earliest touch), `last_touch` (to the latest), `even_split` (split evenly between the
//!   distinct campaigns touched, in minor units: the remainder goes one unit each to the
//!   campaigns touched first).
//! - `cost`: the `CampaignCostRecorded` spends per currency; `roi`, per model and currency
//!   with a cost: (revenue − cost) / cost. A currency with revenue and no cost has no ROI.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_core::money::Money;
use crm_core::money::currency::Currency;
use serde::Serialize;

use super::{Campaign, TABLE, TOUCHES};
use crate::db::{Col, ReadDb, SqlValue, in_clauses};
use crate::error::ProjectionError;
use crate::rows::decode_doc;

/// What the answer says about its attribution models.
pub const ATTRIBUTION: &str = "touches are a customer's campaign memberships and positive \
responses before the deal was won; first_touch credits a won deal's whole amount to the \
campaign of its earliest touch, last_touch to the latest, even_split splits it evenly between \
the distinct campaigns touched (minor-unit remainder to the earliest); per currency, never \
summed across currencies";

/// Sums per currency code under each attribution model, while folding.
#[derive(Debug, Default)]
struct Attributed<T> {
    first_touch: T,
    last_touch: T,
    even_split: T,
}

/// Revenue won per currency under each attribution model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RevenueByModel {
    pub first_touch: Vec<Money>,
    pub last_touch: Vec<Money>,
    pub even_split: Vec<Money>,
}

/// ROI per currency (with a cost) under each attribution model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RoiByModel {
    pub first_touch: BTreeMap<String, f64>,
    pub last_touch: BTreeMap<String, f64>,
    pub even_split: BTreeMap<String, f64>,
}

/// A campaign's results.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub name: Option<String>,
    /// The consent channel members are reached on: adding a customer needs its marketing
    /// consent on it.
    pub channel: Option<String>,
    /// A free label (`webinar`, `trade_show`).
    pub medium: Option<String>,
    pub launched_at: Option<DateTime<Utc>>,
    pub members: i64,
    pub customer_members: i64,
    pub lead_members: i64,
    pub responded: i64,
    pub response_rate: Option<f64>,
    pub responses: BTreeMap<String, i64>,
    pub leads_generated: i64,
    pub leads_converted: i64,
    pub opportunities_influenced: i64,
    pub opportunities_won: i64,
    /// Revenue won per currency under each model (see `attribution`).
    pub revenue_won: RevenueByModel,
    /// Spend per currency.
    pub cost: Vec<Money>,
    /// (revenue − cost) / cost per model and currency with a cost.
    pub roi: RoiByModel,
    /// The attribution models, stated.
    pub attribution: &'static str,
}

/// The report of campaign `id`, or `None` when the tenant has no event of it.
pub async fn report(
    db: &ReadDb,
    tenant: &str,
    id: &str,
) -> Result<Option<CampaignReport>, ProjectionError> {
    let rows = db
        .fetch(
            &format!("SELECT id, doc FROM {TABLE} WHERE tenant = ? AND id = ?"),
            vec![tenant.into(), id.into()],
            &[Col::Text, Col::Text],
        )
        .await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let campaign: Campaign = decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
    build(db, tenant, id, campaign).await.map(Some)
}

/// A page of reports by campaign id (after `after`, at most `limit`).
pub async fn reports(
    db: &ReadDb,
    tenant: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<CampaignReport>, ProjectionError> {
    let mut sql = format!("SELECT id, doc FROM {TABLE} WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    if let Some(after) = after {
        sql.push_str(" AND id > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let mut out = Vec::new();
    for row in db.fetch(&sql, args, &[Col::Text, Col::Text]).await? {
        let id = row[0].as_text().unwrap_or_default().to_owned();
        let campaign: Campaign =
            decode_doc(TABLE, tenant, &id, row[1].as_text().unwrap_or_default())?;
        out.push(build(db, tenant, &id, campaign).await?);
    }
    Ok(out)
}

struct Touch {
    campaign: String,
    at: i64,
    position: i64,
}

struct Deal {
    customer: String,
    status: String,
    currency: Option<String>,
    amount: i64,
    closed_at: Option<i64>,
}

fn money(table: &str, code: &str, minor: i64) -> Result<Money, ProjectionError> {
    Currency::parse(code)
        .map(|currency| Money::new(minor, currency))
        .map_err(|e| ProjectionError::Corrupt {
            table: table.to_owned(),
            key: code.to_owned(),
            reason: e.to_string(),
        })
}

fn monies(table: &str, sums: &BTreeMap<String, i64>) -> Result<Vec<Money>, ProjectionError> {
    sums.iter()
        .map(|(code, minor)| money(table, code, *minor))
        .collect()
}

async fn build(
    db: &ReadDb,
    tenant: &str,
    id: &str,
    campaign: Campaign,
) -> Result<CampaignReport, ProjectionError> {
    let members = campaign.members.len() as i64;
    let customer_members = campaign
        .members
        .keys()
        .filter(|k| k.starts_with("customer:"))
        .count() as i64;
    let responded = campaign.responders.len() as i64;

    let leads = db
        .fetch(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'converted' THEN 1 ELSE 0 END), 0) \
                 FROM {} WHERE tenant = ? AND campaign_id = ?",
                crate::leads::TABLE
            ),
            vec![tenant.into(), id.into()],
            &[Col::Int, Col::Int],
        )
        .await?;
    let lead = |i: usize| leads.first().and_then(|r| r[i].as_int()).unwrap_or(0);

    // The customers this campaign touched, their deals, and all their touches.
    let customers: Vec<String> = db
        .fetch(
            &format!(
                "SELECT DISTINCT customer_id FROM {TOUCHES} WHERE tenant = ? AND campaign_id = ?"
            ),
            vec![tenant.into(), id.into()],
            &[Col::Text],
        )
        .await?
        .into_iter()
        .filter_map(|mut r| r.remove(0).into_text())
        .collect();
    let refs: Vec<&str> = customers.iter().map(String::as_str).collect();
    let mut deals = Vec::new();
    let mut touches: BTreeMap<String, Vec<Touch>> = BTreeMap::new();
    for (condition, values) in in_clauses(db.backend(), "customer_id", &refs) {
        let mut args: Vec<SqlValue> = vec![tenant.into()];
        args.extend(values.clone());
        let rows = db
            .fetch(
                &format!(
                    "SELECT customer_id, status, currency, amount_minor, closed_at FROM {} \
                     WHERE tenant = ? AND {condition} ORDER BY id",
                    crate::pipeline::TABLE
                ),
                args,
                &[Col::Text, Col::Text, Col::Text, Col::Int, Col::Int],
            )
            .await?;
        deals.extend(rows.into_iter().map(|r| Deal {
            customer: r[0].as_text().unwrap_or_default().to_owned(),
            status: r[1].as_text().unwrap_or_default().to_owned(),
            currency: r[2].as_text().map(str::to_owned),
            amount: r[3].as_int().unwrap_or(0),
            closed_at: r[4].as_int(),
        }));
        let mut args: Vec<SqlValue> = vec![tenant.into()];
        args.extend(values);
        let rows = db
            .fetch(
                &format!(
                    "SELECT customer_id, campaign_id, at, position FROM {TOUCHES} \
                     WHERE tenant = ? AND {condition} ORDER BY at, position"
                ),
                args,
                &[Col::Text, Col::Text, Col::Int, Col::Int],
            )
            .await?;
        for r in rows {
            touches
                .entry(r[0].as_text().unwrap_or_default().to_owned())
                .or_default()
                .push(Touch {
                    campaign: r[1].as_text().unwrap_or_default().to_owned(),
                    at: r[2].as_int().unwrap_or(0),
                    position: r[3].as_int().unwrap_or(0),
                });
        }
    }

    let mut influenced = 0;
    let mut won = 0;
    let mut revenue: Attributed<BTreeMap<String, i64>> = Attributed::default();
    for deal in &deals {
        if !matches!(deal.status.as_str(), "open" | "won" | "lost") {
            continue;
        }
        let mut before: Vec<&Touch> = touches
            .get(&deal.customer)
            .into_iter()
            .flatten()
            .filter(|t| deal.status == "open" || deal.closed_at.is_some_and(|c| t.at < c))
            .collect();
        before.sort_by_key(|t| (t.at, t.position));
        if !before.iter().any(|t| t.campaign == id) {
            continue;
        }
        influenced += 1;
        if deal.status != "won" {
            continue;
        }
        won += 1;
        let Some(currency) = &deal.currency else {
            continue;
        };
        let add = |sums: &mut BTreeMap<String, i64>, minor: i64| {
            let sum = sums.entry(currency.clone()).or_default();
            *sum = sum.saturating_add(minor);
        };
        if before.first().is_some_and(|t| t.campaign == id) {
            add(&mut revenue.first_touch, deal.amount);
        }
        if before.last().is_some_and(|t| t.campaign == id) {
            add(&mut revenue.last_touch, deal.amount);
        }
        let mut distinct: Vec<&str> = Vec::new();
        for touch in &before {
            if !distinct.contains(&touch.campaign.as_str()) {
                distinct.push(&touch.campaign);
            }
        }
        let n = distinct.len() as i64;
        if let Some(index) = distinct.iter().position(|c| *c == id) {
            let share = deal.amount / n + i64::from((index as i64) < deal.amount % n);
            add(&mut revenue.even_split, share);
        }
    }
    let roi = |revenue: &BTreeMap<String, i64>| -> BTreeMap<String, f64> {
        campaign
            .cost
            .iter()
            .filter(|(_, cost)| **cost > 0)
            .map(|(code, cost)| {
                let won = revenue.get(code).copied().unwrap_or(0);
                (code.clone(), (won as f64 - *cost as f64) / *cost as f64)
            })
            .collect()
    };
    let deal_table = crate::pipeline::TABLE;
    Ok(CampaignReport {
        campaign_id: id.to_owned(),
        name: campaign.name.clone(),
        channel: campaign.channel.clone(),
        medium: campaign.medium.clone(),
        launched_at: campaign.launched_at,
        members,
        customer_members,
        lead_members: members - customer_members,
        responded,
        response_rate: (members > 0).then(|| responded as f64 / members as f64),
        responses: campaign.responses.clone(),
        leads_generated: lead(0),
        leads_converted: lead(1),
        opportunities_influenced: influenced,
        opportunities_won: won,
        roi: RoiByModel {
            first_touch: roi(&revenue.first_touch),
            last_touch: roi(&revenue.last_touch),
            even_split: roi(&revenue.even_split),
        },
        revenue_won: RevenueByModel {
            first_touch: monies(deal_table, &revenue.first_touch)?,
            last_touch: monies(deal_table, &revenue.last_touch)?,
            even_split: monies(deal_table, &revenue.even_split)?,
        },
        cost: monies(TABLE, &campaign.cost)?,
        attribution: ATTRIBUTION,
    })
}
