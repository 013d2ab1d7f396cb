//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the code. Each handler
//! carries a `#[utoipa::path]` (its method, path, parameters, request body and success
//! answers, typed by the Rust types it serialises), and the router is built from those
//! handlers ([`crate::app::api_routes`] through `utoipa_axum::routes!`), so a route cannot
//! be served without being described: a handler without the attribute does not compile.
//!
//! What every route shares is added here once, by [`StandardAnswers`]: the bearer scheme, the
//! problem answers (400 for a bad parameter or body, 401/403 for the key, 429 for its rate,
//! 503 while a read model has not reached `min_position` or the tenant is parked, 408/413 for
//! bodies), each as `application/problem+json` with the [`ProblemDocument`] schema.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's fixed parts; the paths come from the router.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "CRM core",
        description = "Event-sourced CRM core: append customer interactions as immutable events, \
query the read models built from them. Every /v1 route needs `Authorization: Bearer <key>`; a \
key is bound to one tenant and one role (ingest, analyst, auditor, admin; admin may call every \
route). Personal fields (names, emails, phones, free texts) read \"[redacted]\" in every answer \
unless the key is an admin key or was created with --personal-data; answers that carry them in \
plain text are recorded in the access log (GET /v1/audit/access). Read-model answers carry the \
read model's log position in the `crm-read-position` header; every query takes `min_position` \
(read-your-writes). Errors are application/problem+json (RFC 9457) naming the parameter, the \
field or the event index at fault.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ProblemDocument, BatchError, EventBatch)),
    tags(
        (name = "events", description = "The log: append, page, stream live"),
        (name = "customers", description = "The customer 360 view, listings, timelines"),
        (name = "sales", description = "The pipeline and opportunities, leads and their funnel"),
        (name = "consent", description = "The consent regime and marketing contacts made without consent"),
        (name = "service", description = "Cases, the service backlog and SLA targets"),
        (name = "audit", description = "Verification and the access log"),
        (name = "privacy", description = "Subject access, erasure, retention"),
        (name = "operations", description = "Health, metrics, projections, this document"),
        (name = "automation", description = "Webhook subscriptions and their deliveries"),
    )
)]
pub struct ApiDoc;

/// A problem answer (RFC 9457), as every error is sent (`application/problem+json`). Members
/// beyond the standard four appear where they apply.
#[derive(Debug, ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)] // described, never built: `crate::problem::Problem` writes the answer
pub struct ProblemDocument {
    /// Always `about:blank`: the status and the detail say what happened.
    #[schema(example = "about:blank")]
    r#type: String,
    /// The status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What was wrong and where: the query parameter, the field, `events[i].field`.
    detail: String,
    /// The body field at fault, where one is.
    field: Option<String>,
    /// An enum-like query parameter given a value outside its set, and the values allowed.
    parameter: Option<String>,
    allowed: Option<Vec<String>>,
    /// The index in the batch of the (first) event at fault.
    event_index: Option<u64>,
    /// A refused batch: every invalid event (up to 100; state-dependent refusals, 409,
    /// list the first only).
    errors: Option<Vec<BatchError>>,
    /// A refused batch: how many events are invalid.
    invalid_events: Option<u64>,
    /// A refused batch: invalid events beyond the 100 listed.
    errors_not_listed: Option<u64>,
    /// On a 503 for `min_position`: the position the read model had reached.
    position: Option<u64>,
    /// On a 400 for a `min_position` beyond the log's head: the head.
    head_position: Option<u64>,
    /// On a 503 for a parked tenant: the read model, the failed event's position and how
    /// many of the tenant's events wait.
    projection: Option<String>,
    failed_position: Option<u64>,
    parked_events: Option<u64>,
    /// On a 429 or 503: seconds to wait (also in `Retry-After`).
    retry_after_secs: Option<u64>,
}

/// The body of `POST /v1/events`: at most `--max-batch-events` (5,000) events, judged whole.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // described, never built: `crm_core::command::parse` reads the body
pub struct EventBatch {
    #[schema(min_items = 1)]
    events: Vec<IncomingEvent>,
}

/// One event as an emitter sends it. Its stream follows from the type and the entity id in
/// `data` (e.g. `customer-<customer_id>`).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // described, never built
pub struct IncomingEvent {
    /// The event's id, its idempotency key within its stream (a UUIDv7 is given when absent,
    /// or one derived from `Idempotency-Key`).
    id: Option<uuid::Uuid>,
    /// An event type of the catalog (docs/events.md).
    #[schema(schema_with = event_type_schema)]
    r#type: String,
    /// The type's fields, as docs/events.md lists them: text, exact decimal amounts as
    /// strings with a `currency`, RFC 3339 times.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// Business time (RFC 3339); the recording time when absent.
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    metadata: Option<IncomingMetadata>,
    /// Refuse the batch (409) unless the stream is at this revision (a number), has no event
    /// (`no_stream`), has one (`stream_exists`); `any` (the default) accepts every state.
    #[schema(schema_with = expected_revision_schema)]
    expected_revision: Option<serde_json::Value>,
}

/// Who sent an event and why; every value at most 1,000 characters.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[allow(dead_code)] // described, never built
pub struct IncomingMetadata {
    actor: Option<String>,
    source: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

fn event_type_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(
            crm_core::catalog::EVENT_TYPES.iter().map(|info| info.name),
        ))
        .description(Some("An event type of the catalog (docs/events.md)."))
        .build()
}

fn expected_revision_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["no_stream", "stream_exists", "any"])),
        )
        .description(Some(
            "The stream's revision (0-based) the batch expects, or no_stream, stream_exists, any.",
        ))
        .build();
    Schema::OneOf(one_of)
}

/// One invalid event of a batch.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // described, never built
pub struct BatchError {
    /// The event's index in the batch.
    event_index: u64,
    /// The member at fault, e.g. `data.amount`; `null` when the whole event is.
    field: Option<String>,
    /// Why it is invalid.
    reason: String,
}

/// Adds what every operation shares: the bearer scheme (and `security: []` on the routes
/// that need no key) and the problem answers.
#[derive(Debug)]
pub struct StandardAnswers;

/// Routes served without a key.
const OPEN_PATHS: &[&str] = &["/healthz", "/metrics", "/openapi.json"];

impl Modify for StandardAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = OPEN_PATHS.contains(&path.as_str());
            for (method, operation) in [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Delete, &mut item.delete),
                (HttpMethod::Patch, &mut item.patch),
            ] {
                if let Some(operation) = operation {
                    add_answers(path, &method, operation, open);
                }
            }
        }
    }
}

fn add_answers(path: &str, method: &HttpMethod, operation: &mut Operation, open: bool) {
    if open {
        operation.security = Some(Vec::new());
        return;
    }
    let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let writes = !matches!(method, HttpMethod::Get);
    let mut wanted: Vec<(&str, &str)> = vec![
        ("401", "No key, an unknown, revoked or expired key."),
        (
            "403",
            "The key's role may not do this, or it needs a key that reads personal data \
             (--personal-data).",
        ),
        (
            "429",
            "The key sent more than its rate (--rate-limit) or holds its most live streams \
             (--live-streams-per-key); Retry-After says when to retry.",
        ),
        (
            "503",
            "A read model has not reached min_position in time (`position` says where it is), \
             the caller's tenant is parked for a read model this route reads (the detail names \
             it), or the database is busy; Retry-After says when to retry.",
        ),
    ];
    if has_params || writes {
        wanted.push((
            "400",
            "Malformed: an unknown or invalid query parameter (named in the detail), bad JSON, \
             a bad id.",
        ));
    }
    if path.contains('{') {
        wanted.push(("404", "Not found: the detail names what."));
    }
    if writes {
        wanted.push(("408", "The body did not arrive within --body-timeout-ms."));
        wanted.push(("413", "The body or the batch is too large."));
        wanted.push((
            "422",
            "Invalid content: the detail names the field (and `events[i]`); `errors` lists \
             every invalid event of a batch.",
        ));
    }
    for (status, description) in wanted {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_answer(description)));
    }
}

fn problem_answer(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The document as served, built on first use from the router's routes.
pub fn spec() -> &'static serde_json::Value {
    static SPEC: OnceLock<serde_json::Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut document = crate::app::api_routes().split_for_parts().1;
        // After the routes: the paths are there only now.
        StandardAnswers.modify(&mut document);
        let mut value = serde_json::to_value(&document).unwrap_or_default();
        name_positions(&mut value);
        value
    })
}

/// `Position` is an alias of `u64`, which utoipa files as a schema named `u64`: the document
/// names it `Position` and says what it is.
fn name_positions(document: &mut serde_json::Value) {
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    else {
        return;
    };
    let Some(mut position) = schemas.remove("u64") else {
        return;
    };
    position["description"] = serde_json::Value::String(
        "A global log position: 1, 2, ... in commit order, shared by every tenant; 0 is \
         before the first event."
            .into(),
    );
    schemas.insert("Position".into(), position);
    rename_refs(
        document,
        "#/components/schemas/u64",
        "#/components/schemas/Position",
    );
}

fn rename_refs(value: &mut serde_json::Value, from: &str, to: &str) {
    match value {
        serde_json::Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                if key == "$ref" && member.as_str() == Some(from) {
                    *member = serde_json::Value::String(to.to_owned());
                } else {
                    rename_refs(member, from, to);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                rename_refs(item, from, to);
            }
        }
        _ => {}
    }
}

/// Every `(method, path)` the document describes, methods in lower case: what the router
/// serves under /v1 and the open routes.
pub fn operations() -> Vec<(String, String)> {
    let value = spec();
    let mut out = Vec::new();
    if let Some(paths) = value["paths"].as_object() {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    out.push((method.clone(), path.clone()));
                }
            }
        }
    }
    out
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object))
)]
pub async fn document() -> Response {
    axum::Json(spec()).into_response()
}
