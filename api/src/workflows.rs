//! `/v1/workflows`: workflow rules (issue 20). A rule is a fact in the log (`WorkflowRuleSet`
//! on `workflow-<id>`, appended through the ingest decision), so `PUT` is an append and `GET
//! /v1/workflows/{id}` folds the rule's stream (every version, read your writes); the list,
//! the run log and schedules read the rule worker's tables (`crm_automation::workflows`). The
//! dry run computes with the worker's own code.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use crm_automation::workflows::{self, DryRun, tables};
use crm_core::automation::rule::Rule;
use crm_core::envelope::{StreamId, TenantId};
use crm_core::store::{Direction, StreamStart};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::SharedState;
use crate::extract::{Caller, Id, Params, read_json};
use crate::keys::Role;
use crate::problem::Problem;

/// A rule's stream: `workflow-<id>`.
fn stream_of(id: &crm_core::ids::EntityId) -> Result<StreamId, Problem> {
    StreamId::parse(&format!("workflow-{id}"))
        .map_err(|e| Problem::bad_request(format!("path: id: {e}")))
}

/// Every version of a rule, from its stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleDetail {
    pub rule_id: String,
    /// The version in force (the number of `WorkflowRuleSet` events so far), 0 if none.
    pub version: u64,
    /// False once removed (`DELETE`): the rule acts no more.
    pub active: bool,
    /// The definition in force (absent once removed).
    #[schema(value_type = Object)]
    pub definition: Option<Value>,
    /// Every change, oldest first.
    pub history: Vec<RuleChange>,
    /// How many events triggered it so far, as the worker counted (absent until the worker
    /// has read the rule).
    pub fired: Option<u64>,
    /// The log position the rule worker has acted on.
    pub worker_position: u64,
}

/// One change of a rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleChange {
    /// The version this change made (a removal keeps the version it removed).
    pub version: u64,
    /// `set` or `removed`.
    pub change: &'static str,
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    /// Who changed it (the key's actor, and its id).
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[schema(value_type = Object)]
    pub definition: Option<Value>,
}

async fn fold_rule(
    state: &SharedState,
    tenant: &TenantId,
    id: &crm_core::ids::EntityId,
) -> Result<Option<RuleDetail>, Problem> {
    let stream = stream_of(id)?;
    let mut history = Vec::new();
    let mut start = StreamStart::Boundary;
    loop {
        let events = state
            .store
            .read_stream(tenant, &stream, Direction::Forwards, start, 1_000)
            .await?;
        let full = events.len() == 1_000;
        for event in &events {
            let data: Value = serde_json::from_str(event.data.get()).unwrap_or(Value::Null);
            let metadata: Value = serde_json::from_str(event.metadata.get()).unwrap_or(Value::Null);
            let set = event.event_type == "WorkflowRuleSet";
            let version = history
                .iter()
                .filter(|c: &&RuleChange| c.change == "set")
                .count() as u64
                + u64::from(set);
            history.push(RuleChange {
                version,
                change: if set { "set" } else { "removed" },
                position: event.position,
                recorded_at: event.recorded_at,
                metadata,
                definition: set.then(|| {
                    let mut d = data;
                    if let Some(o) = d.as_object_mut() {
                        o.remove("rule_id");
                    }
                    d
                }),
            });
            start = StreamStart::Revision(event.revision + 1);
        }
        if !full {
            break;
        }
    }
    let Some(last) = history.last() else {
        return Ok(None);
    };
    let (version, active, definition) =
        (last.version, last.change == "set", last.definition.clone());
    let stored = tables::rules(&state.db, tenant.as_str()).await?;
    Ok(Some(RuleDetail {
        rule_id: id.to_string(),
        version,
        active,
        definition,
        history,
        fired: stored
            .iter()
            .find(|r| r.rule_id == id.as_str())
            .map(|r| r.fired),
        worker_position: tables::checkpoint(&state.db).await?,
    }))
}

/// What `PUT /v1/workflows/{id}` recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleSetAnswer {
    pub rule_id: String,
    /// The new version (1 for a new rule).
    pub version: u64,
    /// The position of the `WorkflowRuleSet`: the rule acts on events after it.
    pub position: u64,
    /// The definition as stored (defaults left out).
    #[schema(value_type = Object)]
    pub definition: Value,
}

/// `PUT /v1/workflows/{id}`.
#[utoipa::path(
    put,
    path = "/v1/workflows/{id}",
    operation_id = "setWorkflow",
    tag = "automation",
    summary = "Create a workflow rule or give it a new version, as a `WorkflowRuleSet` event (role admin)",
    description = "The body is the rule: `name`, `enabled` (default true), `trigger` (`{\"event\": type, \"conditions\": [...]}` or `{\"schedule\": ..., ...}`) and `actions` (`{\"append\": {\"type\", \"data\"}}` or `{\"webhook\": {\"subscription\"}}`); docs/automation.md describes them. The new version acts on events after its position; earlier actions keep the version they were taken under.",
    params(crate::extract::IdParam),
    request_body(content = Object, description = "The rule's definition."),
    responses(
        (status = 201, description = "The rule's new version was recorded.", body = RuleSetAnswer),
        (status = 409, description = "The rule's stream moved while the change was judged, again and again; retry.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The definition is refused; the problem names the member (`trigger.conditions[0].op`).", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn set_rule(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[], "change workflow rules")?;
    let mut value = read_json(&state, body).await?;
    let Some(object) = value.as_object_mut() else {
        return Err(
            Problem::unprocessable("workflow rule: the body must be a JSON object")
                .with("field", ""),
        );
    };
    if object.contains_key("rule_id") {
        return Err(Problem::unprocessable(
            "workflow rule: rule_id: the rule's id is the path's; leave it out of the body",
        )
        .with("field", "rule_id"));
    }
    object.insert("rule_id".into(), json!(id.as_str()));
    let outcome = crate::queries::append_setting(
        &state,
        principal,
        "workflow rule",
        "WorkflowRuleSet",
        value,
    )
    .await?;
    let detail = fold_rule(&state, &principal.tenant, &id)
        .await?
        .ok_or_else(|| Problem::internal(&"the rule just set cannot be read back"))?;
    let answer = RuleSetAnswer {
        rule_id: id.to_string(),
        version: detail.version,
        position: outcome.last_position,
        definition: detail.definition.unwrap_or(Value::Null),
    };
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `GET /v1/workflows/{id}`.
#[utoipa::path(
    get,
    path = "/v1/workflows/{id}",
    operation_id = "getWorkflow",
    tag = "automation",
    summary = "A workflow rule: the version in force and every change, from the log (role admin or auditor)",
    params(crate::extract::IdParam),
    responses(
        (status = 200, description = "The rule.", body = RuleDetail),
        (status = 404, description = "No rule with this id.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn rule(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Auditor], "read workflow rules")?;
    let detail = fold_rule(&state, &principal.tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no workflow rule {id}")))?;
    Ok(axum::Json(detail).into_response())
}

/// What `DELETE /v1/workflows/{id}` recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleRemovedAnswer {
    pub rule_id: String,
    /// The position of the `WorkflowRuleRemoved`: the rule acts on no event after it.
    pub position: u64,
}

/// `DELETE /v1/workflows/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/workflows/{id}",
    operation_id = "removeWorkflow",
    tag = "automation",
    summary = "Remove a workflow rule, as a `WorkflowRuleRemoved` event (role admin)",
    params(crate::extract::IdParam),
    responses(
        (status = 200, description = "The rule acts no more.", body = RuleRemovedAnswer),
        (status = 409, description = "The rule changed while it was being removed; read it again.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No rule in force with this id.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn remove_rule(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, Problem> {
    let principal = caller.require(&[], "remove workflow rules")?;
    let detail = fold_rule(&state, &principal.tenant, &id).await?;
    let Some(detail) = detail.filter(|d| d.active) else {
        return Err(Problem::not_found(format!(
            "no workflow rule {id} in force"
        )));
    };
    let revision = detail.history.len() as u64 - 1;
    let batch = crm_core::command::parse::parse_batch(
        &json!({"events": [{"type": "WorkflowRuleRemoved", "data": {"rule_id": id.as_str()},
            "expected_revision": revision}]}),
        &principal.tenant,
        &principal.key_id,
        None,
        1,
    )?;
    let outcome = crm_core::command::append(
        state.store.as_ref(),
        &state.streams,
        &principal.tenant,
        &batch,
    )
    .await?;
    Ok(axum::Json(RuleRemovedAnswer {
        rule_id: id.to_string(),
        position: outcome.last_position,
    })
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Wait (up to 10 s) until the rule worker has read the log up to this position, so a
    /// rule just set is listed.
    min_position: Option<u64>,
}

/// One rule in the list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleSummary {
    pub rule_id: String,
    pub version: u64,
    /// False once removed.
    pub active: bool,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// `event` or `schedule`.
    pub trigger: Option<&'static str>,
    /// Events that triggered it so far.
    pub fired: u64,
    /// The position of its last change.
    pub changed_at: u64,
}

/// The rule list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleList {
    pub items: Vec<RuleSummary>,
    /// The log position the rule worker has acted on: the list holds every rule set before.
    pub worker_position: u64,
}

/// Waits (up to 10 s) for the rule worker to reach `min_position`; refuses one beyond the
/// log's head at once.
async fn reach_worker(state: &SharedState, min_position: Option<u64>) -> Result<u64, Problem> {
    let Some(wanted) = min_position else {
        return Ok(tables::checkpoint(&state.db).await?);
    };
    let head = state.store.head_position().await?;
    if wanted > head {
        return Err(Problem::bad_request(format!(
            "min_position: {wanted} is beyond the log's head ({head})"
        ))
        .with("field", "min_position"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let at = tables::checkpoint(&state.db).await?;
        if at >= wanted {
            return Ok(at);
        }
        if std::time::Instant::now() > deadline {
            return Err(Problem::unavailable(format!(
                "the workflow worker has acted up to position {at}, not yet {wanted}; retry"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `GET /v1/workflows`.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    operation_id = "listWorkflows",
    tag = "automation",
    summary = "The tenant's workflow rules, as the rule worker holds them (role admin or auditor)",
    params(ListParams),
    responses((status = 200, description = "The rules, by id.", body = RuleList))
)]
pub async fn rules(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ListParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Auditor], "read workflow rules")?;
    let worker_position = reach_worker(&state, params.min_position).await?;
    let items = tables::rules(&state.db, principal.tenant.as_str())
        .await?
        .into_iter()
        .map(|row| {
            let rule = row
                .definition
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|v| Rule::parse(&v).ok());
            RuleSummary {
                rule_id: row.rule_id,
                version: row.version,
                active: rule.is_some(),
                name: rule.as_ref().map(|r| r.name.clone()),
                enabled: rule.as_ref().map(|r| r.enabled),
                trigger: rule.as_ref().map(|r| match r.trigger {
                    crm_core::automation::rule::Trigger::Event { .. } => "event",
                    crm_core::automation::rule::Trigger::Schedule { .. } => "schedule",
                }),
                fired: row.fired,
                changed_at: row.set_at,
            }
        })
        .collect();
    Ok(axum::Json(RuleList {
        items,
        worker_position,
    })
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// At most this many runs (1 to 500, default 100).
    limit: Option<usize>,
    /// Runs before this one (the `next_before` of the previous page).
    before: Option<i64>,
}

/// A page of a rule's run log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<tables::Run>,
    /// Pass as `before` for the next page (absent on the last).
    pub next_before: Option<i64>,
}

/// `GET /v1/workflows/{id}/runs`.
#[utoipa::path(
    get,
    path = "/v1/workflows/{id}/runs",
    operation_id = "listWorkflowRuns",
    tag = "automation",
    summary = "What a rule did, trigger by trigger: the events it appended, refusals, stops and late schedules (role admin or auditor)",
    params(crate::extract::IdParam, RunParams),
    responses((status = 200, description = "The run log, newest first.", body = RunPage))
)]
pub async fn runs(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<RunParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Auditor], "read workflow runs")?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Problem::bad_request("limit: between 1 and 500").with("field", "limit"));
    }
    let items = tables::runs(
        &state.db,
        principal.tenant.as_str(),
        id.as_str(),
        params.before,
        limit,
    )
    .await?;
    let next_before = (items.len() == limit)
        .then(|| items.last().map(|r| r.ran_at))
        .flatten();
    Ok(axum::Json(RunPage { items, next_before }).into_response())
}

/// The body of `POST /v1/workflows/{id}/test`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The definition to try (else the version in force).
    #[schema(value_type = Object)]
    pub definition: Option<Value>,
    /// Event triggers: events after this position (default 0).
    pub from: Option<u64>,
    /// Event triggers: up to this position (default the log's head).
    pub to: Option<u64>,
    /// Schedules: the time they are judged at (default now).
    pub at: Option<DateTime<Utc>>,
}

/// `POST /v1/workflows/{id}/test`.
#[utoipa::path(
    post,
    path = "/v1/workflows/{id}/test",
    operation_id = "testWorkflow",
    tag = "automation",
    summary = "A dry run: what the rule would have done over a range of the log, or would do now for its schedule, without doing it (role admin or analyst)",
    description = "Computed by the worker's own code: the triggers, the conditions, the rendered events (checked against the catalog) and calls. Nothing is appended, queued or recorded; the ingest's business rules are not judged. At most 100,000 events are examined and 100 firings listed.",
    params(crate::extract::IdParam),
    request_body(content = TestRequest, description = "`{\"from\": 0, \"to\": 5000}`, optionally with a `definition` to try."),
    responses(
        (status = 200, description = "What the rule would have done.", body = DryRun),
        (status = 404, description = "No rule in force with this id and no definition given.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The definition or a bound is refused, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn test_rule(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "try workflow rules")?;
    let value = read_json(&state, body).await?;
    let request: TestRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        Problem::unprocessable(format!("workflow test: {}: {}", e.path(), e.inner()))
            .with("field", e.path().to_string())
    })?;
    let stored = fold_rule(&state, &principal.tenant, &id).await?;
    let current = stored
        .as_ref()
        .filter(|d| d.active)
        .map(|d| d.version)
        .unwrap_or(0);
    let (rule, version) = match (&request.definition, stored.and_then(|d| d.definition)) {
        (Some(definition), _) => (
            Rule::parse(definition).map_err(|e| {
                Problem::unprocessable(format!("workflow test: definition.{e}"))
                    .with("field", format!("definition.{}", e.member))
            })?,
            current + 1,
        ),
        (None, Some(definition)) => (
            Rule::parse(&definition)
                .map_err(|e| Problem::internal(&format!("the stored rule: {e}")))?,
            current,
        ),
        (None, None) => {
            return Err(Problem::not_found(format!(
                "no workflow rule {id} in force; give a definition to try"
            )));
        }
    };
    let head = state.store.head_position().await?;
    let from = request.from.unwrap_or(0);
    let to = request.to.unwrap_or(head).min(head);
    if from > to {
        return Err(Problem::unprocessable(format!(
            "workflow test: from: {from} is after to ({to})"
        ))
        .with("field", "from"));
    }
    let run = workflows::dry_run(
        &state.workflows,
        &principal.tenant,
        id.as_str(),
        version,
        &rule,
        from,
        to,
        request.at.unwrap_or_else(Utc::now),
    )
    .await?;
    Ok(axum::Json(run).into_response())
}
