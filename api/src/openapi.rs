//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, built once from the
//! tables below. A test checks that each route the router answers is described here.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A query parameter: `(name, description)`; a description starting with "integer" types it.
pub type Param = (&'static str, &'static str);
/// `(method, path, roles, summary, query parameters)`.
pub type Route = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [Param],
);

/// Every described route.
pub const ROUTES: &[Route] = &[
    (
        "get",
        "/healthz",
        "",
        "Process health from the stored state (alike in every process): the log's head, each projection's position, lag and parked-tenant count. 200 `ok`, 200 `degraded` while tenants are parked, 503 `failing` while a projection fails for every tenant.",
        &[],
    ),
    (
        "get",
        "/metrics",
        "",
        "Prometheus metrics: requests, latencies, appends, projection lag.",
        &[],
    ),
    ("get", "/openapi.json", "", "This document.", &[]),
    (
        "post",
        "/v1/events",
        "ingest",
        "Append a batch of events, validated whole and appended atomically. Body: {\"events\": [{\"id\"?, \"type\", \"data\", \"occurred_at\"?, \"metadata\"?, \"expected_revision\"?}]}. 201 when something was written, 200 when every event was a duplicate. Header Idempotency-Key derives ids for events sent without one.",
        &[],
    ),
    (
        "get",
        "/v1/events",
        "analyst",
        "The tenant's events in log order, with full envelopes. Personal fields read \"[redacted]\" unless the key reads personal data.",
        &[
            ("after", "integer: events above this position (default 0)"),
            ("limit", "integer: page size, 1 to 1000 (default 50)"),
        ],
    ),
    (
        "get",
        "/v1/events/live",
        "analyst",
        "Server-sent events: each log event (id = position, event = type, data = envelope) from `after` (or Last-Event-ID), then live.",
        &[("after", "integer: start after this position (default 0)")],
    ),
    (
        "post",
        "/v1/customers/{id}/erase",
        "admin",
        "Erase the customer's personal data: destroys its data key (and those of leads converted to it and customers merged into it) and appends CustomerErased in one transaction, waits for the read models, then scrubs the database files. Idempotent (200 each time, one CustomerErased). 404 for an unknown customer.",
        &[],
    ),
    (
        "post",
        "/v1/leads/{id}/erase",
        "admin",
        "Erase a lead never converted (409 for a converted one: erase its customer). Appends LeadErased; otherwise as the customer erasure.",
        &[],
    ),
    (
        "get",
        "/v1/verify",
        "auditor",
        "Verify the tenant's hash chains (or one stream's); names the first broken event.",
        &[("stream", "string: only this stream, e.g. customer-c-1")],
    ),
    (
        "get",
        "/v1/customers",
        "analyst",
        "Customers by id, filtered and searched, in pages.",
        &[
            (
                "search",
                "string: case-insensitive part of the name, email or id, or at least 5 digits of the phone number (spaces, dashes, dots, parentheses and a leading + ignored); only for keys that read personal data (403 otherwise)",
            ),
            ("segment", "string"),
            ("owner", "string"),
            ("status", "active | merged | erased"),
            ("after", "string: the next_after of the previous page"),
            ("limit", "integer: 1 to 1000 (default 50)"),
            ("min_position", "integer: read-your-writes"),
        ],
    ),
    (
        "get",
        "/v1/customers/{id}",
        "analyst",
        "The customer 360 view, live or as of a past moment (give at most one of as_of, known_at, position).",
        &[
            (
                "as_of",
                "RFC 3339: fold the events that occurred by then; figures evaluated then",
            ),
            ("known_at", "RFC 3339: fold the events recorded by then"),
            (
                "position",
                "integer: fold the events up to this log position",
            ),
            (
                "at",
                "RFC 3339: evaluate time-based figures (RFM) at this time",
            ),
            ("min_position", "integer: read-your-writes"),
        ],
    ),
    (
        "get",
        "/v1/customers/{id}/timeline",
        "analyst, auditor",
        "Every event touching the customer (its streams, deals, cases, converted leads, merged duplicates) with data from the log; personal fields of an erased customer read \"[erased]\".",
        &[
            (
                "after",
                "integer: entries after this position (before it with order=desc)",
            ),
            ("limit", "integer: 1 to 1000 (default 50)"),
            ("order", "asc | desc"),
            ("min_position", "integer: read-your-writes"),
        ],
    ),
    (
        "get",
        "/v1/customers/{id}/personal-data",
        "analyst, auditor (key created with --personal-data)",
        "Subject access and portability: everything held about the customer as one JSON document: its current profile and consents, and each personal field of each event touching it (its own stream, its cases and deals, leads converted to it, customers merged into it) with the event's id, type, stream, position and times. Fields of an erased customer read \"[erased]\". 403 for a key without --personal-data; 404 for an unknown customer. The read is recorded in the access log.",
        &[("min_position", "integer: read-your-writes")],
    ),
    (
        "get",
        "/v1/audit/access",
        "auditor",
        "The access log: one row per answer and data subject whose personal fields a key received in plain text (key id, subject, route, time; never a value), oldest first. Append-only: the database refuses to change or remove rows.",
        &[
            (
                "subject",
                "string: customer:<id> or lead:<id> (a bare id is a customer's)",
            ),
            (
                "key_id",
                "string: 16 hex digits, as `crm-api keys list` shows",
            ),
            ("from", "RFC 3339: reads at or after this time"),
            ("to", "RFC 3339: reads before this time"),
            ("after", "integer: the next_after of the previous page"),
            ("limit", "integer: 1 to 1000 (default 50)"),
        ],
    ),
    (
        "get",
        "/v1/pipeline",
        "analyst",
        "Pipeline totals by stage and currency, forecast by close month and category, win rate, cycle time; of one owner's deals, as they stood at a past business time.",
        &[
            ("owner", "string: only this sales rep's opportunities"),
            (
                "as_of",
                "RFC 3339: the pipeline as it stood then (each deal's stage then from its stage history; deals opened later absent; won or lost only if closed by then)",
            ),
            ("min_position", "integer: read-your-writes"),
        ],
    ),
    (
        "get",
        "/v1/opportunities",
        "analyst",
        "Opportunities by id, with time in each stage, in pages.",
        &[
            ("status", "open | won | lost"),
            (
                "stage",
                "Prospecting | Qualification | Proposal | Negotiation | Closed Won | Closed Lost",
            ),
            ("owner", "string"),
            ("customer_id", "string"),
            ("after", "string: the next_after of the previous page"),
            ("limit", "integer: 1 to 1000 (default 50)"),
            ("at", "RFC 3339: measure time in stage up to then"),
            ("min_position", "integer: read-your-writes"),
        ],
    ),
    (
        "get",
        "/v1/cases",
        "analyst",
        "Cases, open and closed, by id, with due times, in pages.",
        &[
            ("status", "unknown | open | resolved | closed"),
            ("customer_id", "string"),
            ("agent", "string: the assignee (or first responder)"),
            ("priority", "low | normal | high | urgent"),
            ("opened_from", "RFC 3339: opened at or after"),
            ("opened_to", "RFC 3339: opened before"),
            ("closed_from", "RFC 3339: closed at or after"),
            ("closed_to", "RFC 3339: closed before"),
            ("after", "string: the next_after of the previous page"),
            ("limit", "integer: 1 to 1000 (default 50)"),
            ("min_position", "integer: read-your-writes"),
        ],
    ),
    (
        "get",
        "/v1/service/backlog",
        "analyst",
        "Open cases by next due time, SLA breaches at `at`, response-time figures, open cases per agent.",
        &[
            (
                "at",
                "RFC 3339: evaluate due times and breaches at this time (default now)",
            ),
            ("offset", "integer: open cases to skip"),
            ("limit", "integer: 1 to 1000 (default 50)"),
            ("min_position", "integer: read-your-writes"),
        ],
    ),
    (
        "get",
        "/v1/service/sla-targets",
        "analyst",
        "The tenant's SLA targets (minutes to first response and to resolution, per priority).",
        &[],
    ),
    (
        "put",
        "/v1/service/sla-targets",
        "admin",
        "Replace the tenant's SLA targets; due times follow at once.",
        &[],
    ),
    (
        "get",
        "/v1/privacy/retention",
        "admin",
        "The tenant's retention rule ({\"erase_after_years\": N or null when off, the default}) and the last run's report: when it ran, the cutoff, how many customers and leads were due and erased.",
        &[],
    ),
    (
        "put",
        "/v1/privacy/retention",
        "admin",
        "Set the tenant's retention rule: {\"erase_after_years\": N} (1 to 100) erases customers and leads (never converted) with no event (by business time) for N years, once a day; {\"erase_after_years\": null} turns it off. 422 naming erase_after_years on anything else.",
        &[],
    ),
    (
        "get",
        "/v1/projections",
        "analyst, auditor",
        "Each read model's position, lag, state and rebuild in progress, from the stored state; its projection-wide error, how many tenants are parked, and the caller's tenant's failure if it is parked.",
        &[],
    ),
];

/// The document, built on first use.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(build)
}

/// `GET /openapi.json`.
pub async fn document() -> Response {
    axum::Json(spec()).into_response()
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, roles, summary, params) in ROUTES {
        let mut parameters: Vec<Value> = params
            .iter()
            .map(|(name, description)| {
                json!({
                    "name": name, "in": "query", "required": false,
                    "description": description,
                    "schema": {"type": if description.starts_with("integer") { "integer" } else { "string" }}
                })
            })
            .collect();
        if path.contains("{id}") {
            parameters.push(json!({
                "name": "id", "in": "path", "required": true,
                "description": "customer id: 1 to 128 letters, digits, '.', '_', ':', '-'",
                "schema": {"type": "string"}
            }));
        }
        let mut responses = serde_json::Map::new();
        responses.insert(
            if *method == "post" { "201" } else { "200" }.into(),
            json!({"description": "success; read-model answers carry the crm-read-position header"}),
        );
        responses.insert(
            "400".into(),
            problem_response("malformed request: bad JSON, parameter or id"),
        );
        if !roles.is_empty() {
            responses.insert("401".into(), problem_response("no key, or not a valid one"));
            responses.insert(
                "403".into(),
                problem_response(
                    "the key's role may not do this, or it needs a key that reads personal data (--personal-data)",
                ),
            );
            responses.insert("404".into(), problem_response("not found"));
            responses.insert("503".into(), problem_response("min_position not reached in time (the body's position says where the read model is), or the caller's tenant is parked for a read model this route reads (the detail names the read model, the failed event's position and the error)"));
            responses.insert(
                "429".into(),
                problem_response(
                    "the key sent more than its rate (--rate-limit), or holds its most live streams (--live-streams-per-key); Retry-After says when to retry",
                ),
            );
        }
        if *method != "get" {
            responses.insert(
                "409".into(),
                problem_response(
                    "conflict: expected revision, a rule of the entity, or an id reused",
                ),
            );
            responses.insert("413".into(), problem_response("body or batch too large"));
            responses.insert(
                "408".into(),
                problem_response("the body did not arrive within --body-timeout-ms"),
            );
            responses.insert(
                "422".into(),
                problem_response("invalid content; the detail names events[i] and the field"),
            );
        }
        let mut operation = json!({
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        });
        if roles.is_empty() {
            operation["security"] = json!([]);
        } else {
            operation["description"] =
                json!(format!("Roles: {roles} (admin may call every route)."));
        }
        if *path == "/v1/events" && *method == "post" {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}}
            });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "CRM core",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Event-sourced CRM core: append customer interactions as immutable events, query the read models built from them. Every /v1 route needs `Authorization: Bearer <key>`; a key is bound to one tenant and one role. Personal fields (names, emails, phones, free texts) read \"[redacted]\" in every answer unless the key is an admin key or was created with --personal-data; answers that carry them in plain text are recorded in the access log (GET /v1/audit/access)."
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "position": {"type": "integer"},
                        "event_index": {"type": "integer"}
                    }
                },
                "EventBatch": {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": false,
                    "properties": {"events": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/IncomingEvent"}}}
                },
                "IncomingEvent": {
                    "type": "object",
                    "required": ["type", "data"],
                    "additionalProperties": false,
                    "properties": {
                        "id": {"type": "string", "format": "uuid", "description": "idempotency key within the event's stream"},
                        "type": {"type": "string", "description": "an event type of the catalog, e.g. OrderPlaced"},
                        "data": {"type": "object", "description": "the type's fields; the stream follows from the entity id in it"},
                        "occurred_at": {"type": "string", "format": "date-time"},
                        "metadata": {"type": "object", "properties": {"actor": {"type": "string"}, "source": {"type": "string"}, "correlation_id": {"type": "string"}, "causation_id": {"type": "string"}}},
                        "expected_revision": {"oneOf": [{"type": "integer", "minimum": 0}, {"enum": ["no_stream", "stream_exists", "any"]}]}
                    }
                }
            }
        }
    })
}
