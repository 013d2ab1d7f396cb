//! `crm-replay timeline CUSTOMER [--tenant T] [--as-of TIME] [--known-at TIME]`: a customer's
//! timeline for auditors (`--as-of` cuts by business time, `--known-at` by recording time,
//! both as `crm_projections::asof::Cut` and the API's query parameters do). Every event touching the customer (its own stream, its deals and cases, converted
//! leads, merged duplicates), in log order, with position, recording and business times, type,
//! actor and source, the data (personal fields read `[erased]` when the customer was erased),
//! and whether each stream's hash chain verifies. Per event, a break marks that event and the
//! ones after it in its stream, never the ones before it: those still chain back to the
//! stream's start.
//!
//! The event list comes from the timeline read model: the tool first makes sure it has reached
//! the log's head (a serving process keeps it current; otherwise this process catches it up).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use crm_core::catalog::personal_fields;
use crm_core::envelope::{Position, RecordedEvent, StreamId, TenantId};
use crm_core::ids::EntityId;
use crm_core::store::{Scope, VerifyReport, at_or_after_break, verify_log};
use crm_projections::asof::Cut;
use crm_projections::runner::{self, RunnerOptions};
use crm_projections::timeline::{self, TimelinePage};
use crm_projections::{ReadDb, bookkeeping, customer360, select_projections};
use serde::Serialize;
use serde_json::Value;

use crate::Ctx;
use crate::output::outln;

const PAGE: usize = 1_000;

#[derive(Serialize)]
struct Line {
    position: Position,
    recorded_at: DateTime<Utc>,
    occurred_at: DateTime<Utc>,
    event_type: String,
    stream_id: String,
    revision: u64,
    event_id: uuid::Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    data: Value,
    metadata: Value,
    /// Whether the event's chain verifies from its stream's start up to it: false for the
    /// events at and after its stream's first break.
    chain_intact: bool,
    /// The break that marks this event, when `chain_intact` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    chain_break: Option<String>,
}

#[derive(Serialize)]
struct StreamCheck {
    stream_id: String,
    intact: bool,
    events_checked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_failure: Option<String>,
}

#[derive(Serialize)]
struct Timeline {
    tenant: String,
    customer_id: String,
    erased: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known_at: Option<DateTime<Utc>>,
    streams: Vec<StreamCheck>,
    events: Vec<Line>,
}

pub async fn run(
    ctx: &Ctx,
    tenant: &str,
    customer: &str,
    as_of: Option<String>,
    known_at: Option<String>,
) -> Result<ExitCode> {
    let tenant = TenantId::parse(tenant).context("--tenant")?;
    let customer = EntityId::parse(customer)
        .map_err(|e| anyhow::anyhow!("customer id {customer:?} is invalid: {e}"))?;
    let time = |flag: &str, text: Option<String>| {
        text.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| format!("{flag} {t:?} is not an RFC 3339 time"))
        })
        .transpose()
    };
    let as_of = time("--as-of", as_of)?;
    let known_at = time("--known-at", known_at)?;
    let db = ReadDb::open(&ctx.url)
        .await
        .context("cannot open the read models")?;
    catch_up(ctx, &db).await?;

    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = timeline::page(
            &db,
            tenant.as_str(),
            customer.as_str(),
            TimelinePage {
                cursor,
                limit: PAGE,
                newest_first: false,
            },
        )
        .await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.position);
        let done = page.len() < PAGE;
        entries.extend(page);
        if done {
            break;
        }
    }
    let state = customer360::get(&db, tenant.as_str(), customer.as_str()).await?;
    if entries.is_empty() && state.is_none() {
        bail!("no customer {customer} in tenant {tenant}");
    }
    let erased = state.is_some_and(|s| s.erased_at.is_some());

    let mut events: Vec<RecordedEvent> = Vec::with_capacity(entries.len());
    let positions: Vec<Position> = entries.iter().map(|e| e.position).collect();
    for chunk in positions.chunks(crm_core::store::MAX_POSITIONS_PER_READ) {
        events.extend(ctx.store.read_positions(&tenant, chunk).await?);
    }
    let cuts: Vec<Cut> = [as_of.map(Cut::OccurredBy), known_at.map(Cut::RecordedBy)]
        .into_iter()
        .flatten()
        .collect();
    events.retain(|e| cuts.iter().all(|cut| cut.contains(e)));

    let mut checks: BTreeMap<String, VerifyReport> = BTreeMap::new();
    for event in &events {
        if !checks.contains_key(event.stream_id.as_str()) {
            let stream = StreamId::parse(event.stream_id.as_str())?;
            let report = verify_log(
                ctx.raw.as_ref(),
                &Scope::Tenant(tenant.clone()),
                Some(&stream),
            )
            .await?;
            checks.insert(event.stream_id.as_str().to_owned(), report);
        }
    }
    let lines: Vec<Line> = events
        .into_iter()
        .map(|event| line(event, erased, &checks))
        .collect::<Result<_>>()?;
    let all_intact = checks.values().all(VerifyReport::is_intact);
    let timeline = Timeline {
        tenant: tenant.to_string(),
        customer_id: customer.to_string(),
        erased,
        as_of,
        known_at,
        streams: checks
            .iter()
            .map(|(stream, report)| StreamCheck {
                stream_id: stream.clone(),
                intact: report.is_intact(),
                events_checked: report.events_checked,
                first_failure: report.first_failure.as_ref().map(ToString::to_string),
            })
            .collect(),
        events: lines,
    };
    if ctx.json {
        outln!("{}", serde_json::to_string(&timeline)?);
    } else {
        print_text(&timeline);
    }
    Ok(if all_intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn line(
    event: RecordedEvent,
    erased: bool,
    checks: &BTreeMap<String, VerifyReport>,
) -> Result<Line> {
    let mut data: Value = serde_json::from_str(event.data.get())?;
    if erased && let Some(object) = data.as_object_mut() {
        for field in personal_fields(&event.event_type) {
            if let Some(value) = object.get_mut(*field) {
                *value = Value::String("[erased]".into());
            }
        }
    }
    let metadata: Value = serde_json::from_str(event.metadata.get())?;
    let chain_break = checks
        .get(event.stream_id.as_str())
        .and_then(|report| report.first_failure.as_ref())
        .filter(|failure| at_or_after_break(failure, &event))
        .map(ToString::to_string);
    Ok(Line {
        position: event.position,
        recorded_at: event.recorded_at,
        occurred_at: event.occurred_at,
        actor: metadata["actor"].as_str().map(str::to_owned),
        source: metadata["source"].as_str().map(str::to_owned),
        chain_intact: checks.contains_key(event.stream_id.as_str()) && chain_break.is_none(),
        chain_break,
        stream_id: event.stream_id.as_str().to_owned(),
        revision: event.revision,
        event_id: event.event_id,
        event_type: event.event_type,
        data,
        metadata,
    })
}

fn print_text(timeline: &Timeline) {
    outln!(
        "customer {} of tenant {}{}{}{}: {} events",
        timeline.customer_id,
        timeline.tenant,
        if timeline.erased { " (erased)" } else { "" },
        timeline
            .as_of
            .map(|t| format!(", as of {}", t.to_rfc3339()))
            .unwrap_or_default(),
        timeline
            .known_at
            .map(|t| format!(", known at {}", t.to_rfc3339()))
            .unwrap_or_default(),
        timeline.events.len()
    );
    for stream in &timeline.streams {
        match &stream.first_failure {
            None => outln!(
                "  chain {}: intact ({} events)",
                stream.stream_id,
                stream.events_checked
            ),
            Some(failure) => outln!("  chain {}: BROKEN: {failure}", stream.stream_id),
        }
    }
    for line in &timeline.events {
        outln!(
            "#{:<8} recorded {}  occurred {}  {:<24} {}@{}{}{}{}",
            line.position,
            line.recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            line.occurred_at.format("%Y-%m-%dT%H:%M:%SZ"),
            line.event_type,
            line.stream_id,
            line.revision,
            line.actor
                .as_deref()
                .map(|a| format!("  actor={a}"))
                .unwrap_or_default(),
            line.source
                .as_deref()
                .map(|s| format!("  source={s}"))
                .unwrap_or_default(),
            line.chain_break
                .as_deref()
                .map(|b| format!("  CHAIN BROKEN ({b})"))
                .unwrap_or_default(),
        );
        outln!("          {}", line.data);
    }
}

/// Brings the timeline and 360 read models to the log's head: a serving process holding them
/// does it by itself; otherwise the runner started here takes them over and catches up.
async fn catch_up(ctx: &Ctx, db: &ReadDb) -> Result<()> {
    let names = ["customer_timeline".to_owned(), "customer_360".to_owned()];
    let head = ctx.store.head_position().await?;
    let reached = |stored: &[bookkeeping::StoredPosition]| {
        names.iter().all(|name| {
            stored
                .iter()
                .any(|s| &s.projection == name && s.position >= head)
        })
    };
    if reached(&bookkeeping::stored_positions(db).await?) {
        return Ok(());
    }
    let runner = runner::start(
        ctx.projection_store(),
        db.clone(),
        select_projections(&names)?,
        RunnerOptions::default(),
    );
    let mut last_progress = (Instant::now(), 0);
    loop {
        let stored = bookkeeping::stored_positions(db).await?;
        if reached(&stored) {
            break;
        }
        let position = stored.iter().map(|s| s.position).min().unwrap_or(0);
        if position > last_progress.1 {
            last_progress = (Instant::now(), position);
        } else if last_progress.0.elapsed() > Duration::from_secs(60) {
            runner.abort();
            bail!(
                "the timeline read model made no progress for 60 s (at position {position} of {head})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner
        .shutdown()
        .await
        .context("the projection runner stopped with an error")
}
