//! Personal fields in answers, decided in one place.
//!
//! Every answer that can carry personal fields goes through [`disclose`] (read-model answers,
//! which implement [`Personal`]) or [`disclose_events`] (log events: `/v1/events` and the
//! live stream) before it is sent:
//!
//! - to a key that reads personal data ([`Principal::reads_personal_data`]: admin, or created
//!   with `--personal-data`) the answer goes as it is, after the data subjects whose
//!   plaintext personal fields it carries are recorded in the access log ([`crate::access`],
//!   one insert per answer); an answer that cannot be recorded is not sent (500);
//! - to any other key every personal value reads [`REDACTED`], and nothing is recorded.
//!
//! What is personal: in event data, the catalog's fields of the event's type
//! ([`personal_fields`]); in read-model answers, the fields the read models copy from them
//! (each [`Personal`] implementation below names them): the 360 view's `name`, `email` and
//! `phone` (live and as of a past moment; its recent timeline holds no data) and the comments
//! of its latest CSAT and NPS answers (`satisfaction`), the customer
//! list's `name` and `email`, an opportunity's `name` and `lost_reason`, a backlog case's
//! and a case list line's `subject` (the backlog keeps no description or reasons), the customer timeline's event
//! data, and the subject-access document. The pipeline summary, SLA targets, projections,
//! verification and the access log hold none. A search of the customer list matches names,
//! emails and phone numbers, so [`require_personal_data`] refuses it to other keys (see
//! [`crate::queries::customers`]).
//!
//! Null stays null and [`ERASED`] stays as it is: neither is personal data, and neither is
//! recorded as a read.

use std::collections::{BTreeSet, HashMap, HashSet};

use crm_core::catalog::personal_fields;
use crm_core::envelope::{Position, RecordedEvent, StreamId, TenantId};
use crm_core::privacy::{ERASED, REDACTED, subject_of_data};
use crm_core::store::keys::{customer_subject, lead_subject};
use crm_core::store::{Direction, StreamStart};
use crm_projections::backlog::{Backlog, Case, CaseLine};
use crm_projections::customer360::{CustomerLine, CustomerView};
use crm_projections::db::{Col, SqlValue};
use crm_projections::leads::{LeadFunnel, LeadLine};
use crm_projections::pipeline::OpportunityLine;
use serde_json::Value;

use crate::app::AppState;
use crate::extract::Caller;
use crate::keys::Principal;
use crate::privacy::SubjectData;
use crate::problem::Problem;
use crate::queries::{Listing, Timeline};

/// An answer that may carry personal fields.
pub trait Personal {
    /// Replaces the value of every personal field with [`REDACTED`].
    fn redact(&mut self);
    /// Adds the data subjects (`customer:<id>`, `lead:<id>`) whose plaintext personal fields
    /// this answer carries.
    fn subjects(&self, out: &mut BTreeSet<String>);
}

/// The answer as `caller` may see it: see the module documentation.
pub async fn disclose<T: Personal>(
    state: &AppState,
    caller: &Caller,
    mut answer: T,
) -> Result<T, Problem> {
    if caller.principal.reads_personal_data() {
        let mut subjects = BTreeSet::new();
        answer.subjects(&mut subjects);
        record(state, caller, &subjects).await?;
    } else {
        answer.redact();
    }
    Ok(answer)
}

/// Log events as `caller` may see them: see the module documentation. The subjects recorded
/// are the customers (or leads) the events belong to, and the customers the timeline read
/// model attributes them to (the survivor of a merge, the customer a lead became).
pub async fn disclose_events(
    state: &AppState,
    caller: &Caller,
    mut events: Vec<RecordedEvent>,
) -> Result<Vec<RecordedEvent>, Problem> {
    if caller.principal.reads_personal_data() {
        let subjects = event_subjects(state, &caller.principal.tenant, &events).await?;
        record(state, caller, &subjects).await?;
    } else {
        for event in &mut events {
            redact_event(event)?;
        }
    }
    Ok(events)
}

/// 403 unless `principal` reads personal data; `what` says what was asked for.
pub fn require_personal_data(principal: &Principal, what: &str) -> Result<(), Problem> {
    if principal.reads_personal_data() {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "{what} needs a key that reads personal data: one created with \
             `crm-api keys create --personal-data` (or an admin key)"
        )))
    }
}

async fn record(
    state: &AppState,
    caller: &Caller,
    subjects: &BTreeSet<String>,
) -> Result<(), Problem> {
    crate::access::record(&state.db, &caller.principal, &caller.route, subjects)
        .await
        .map_err(|error| {
            tracing::error!(%error, "the access log refused a row: the answer is withheld");
            Problem::internal(&"the access log could not record the read")
        })
}

/// True when a value is plaintext personal data (not null, erased or redacted).
fn plain(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => text != ERASED && text != REDACTED,
        _ => true,
    }
}

fn plain_text(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|text| text != ERASED && text != REDACTED)
}

fn redact_text(value: &mut Option<String>) {
    if let Some(text) = value
        && text != ERASED
    {
        *text = REDACTED.to_owned();
    }
}

/// Replaces the personal fields of one event's data (an object of `event_type`) with
/// [`REDACTED`]; true when anything changed.
pub fn redact_data(event_type: &str, data: &mut Value) -> bool {
    let Some(object) = data.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for field in personal_fields(event_type) {
        if let Some(value) = object.get_mut(*field)
            && !value.is_null()
            && value.as_str() != Some(ERASED)
        {
            *value = Value::String(REDACTED.to_owned());
            changed = true;
        }
    }
    changed
}

/// True when the event data carries a plaintext personal field.
pub fn carries_personal_data(event_type: &str, data: &Value) -> bool {
    personal_fields(event_type)
        .iter()
        .any(|field| data.get(*field).is_some_and(plain))
}

/// The data subject an event belongs to, as far as its stream and data tell: the customer of
/// a `customer-` stream, the lead of a `lead-` stream, else the `customer_id` in the data.
pub fn direct_subject(stream: &str, data: &Value) -> Option<String> {
    let stream = StreamId::parse(stream).ok()?;
    match stream.category() {
        "customer" => Some(customer_subject(stream.entity_id())),
        "lead" => Some(lead_subject(stream.entity_id())),
        _ => data
            .get("customer_id")
            .and_then(Value::as_str)
            .map(customer_subject),
    }
}

fn redact_event(event: &mut RecordedEvent) -> Result<(), Problem> {
    if personal_fields(&event.event_type).is_empty() {
        return Ok(());
    }
    let mut data: Value =
        serde_json::from_str(event.data.get()).map_err(|e| Problem::internal(&e))?;
    if redact_data(&event.event_type, &mut data) {
        event.data = serde_json::value::to_raw_value(&data).map_err(|e| Problem::internal(&e))?;
    }
    Ok(())
}

/// The subjects whose plaintext personal fields `events` carry.
async fn event_subjects(
    state: &AppState,
    tenant: &TenantId,
    events: &[RecordedEvent],
) -> Result<BTreeSet<String>, Problem> {
    let mut subjects = BTreeSet::new();
    let mut carrying: HashSet<Position> = HashSet::new();
    // The subject of a case or deal stream, from its opening event, for the events that
    // name no customer (`CaseEscalated`, `OpportunityLost`...).
    let mut openings: HashMap<&StreamId, Option<String>> = HashMap::new();
    for event in events {
        if personal_fields(&event.event_type).is_empty() {
            continue;
        }
        let data: Value =
            serde_json::from_str(event.data.get()).map_err(|e| Problem::internal(&e))?;
        if !carries_personal_data(&event.event_type, &data) {
            continue;
        }
        carrying.insert(event.position);
        let subject = match direct_subject(event.stream_id.as_str(), &data) {
            Some(subject) => Some(subject),
            None => match openings.get(&event.stream_id) {
                Some(subject) => subject.clone(),
                None => {
                    let subject = opening_subject(state, tenant, &event.stream_id).await?;
                    openings.insert(&event.stream_id, subject.clone());
                    subject
                }
            },
        };
        // A stream whose opening names no customer: record the entity itself, so the read
        // is still on record.
        subjects.insert(subject.unwrap_or_else(|| {
            format!(
                "{}:{}",
                event.stream_id.category(),
                event.stream_id.entity_id()
            )
        }));
    }
    let (Some(first), Some(last)) = (carrying.iter().min(), carrying.iter().max()) else {
        return Ok(subjects);
    };
    let bound = |p: Position| SqlValue::Int(i64::try_from(p).unwrap_or(i64::MAX));
    let rows = state
        .db
        .fetch(
            &format!(
                "SELECT position, customer_id FROM {} \
                 WHERE tenant = ? AND position >= ? AND position <= ?",
                crm_projections::timeline::TABLE
            ),
            vec![tenant.as_str().into(), bound(*first), bound(*last)],
            &[Col::Int, Col::Text],
        )
        .await
        .map_err(Problem::from)?;
    for row in rows {
        let position = row[0].as_int().and_then(|p| u64::try_from(p).ok());
        if let (Some(position), Some(customer)) = (position, row[1].as_text())
            && carrying.contains(&position)
        {
            subjects.insert(customer_subject(customer));
        }
    }
    Ok(subjects)
}

/// The subject named by the first event of a stream (read as stored: `customer_id` is never
/// sealed).
async fn opening_subject(
    state: &AppState,
    tenant: &TenantId,
    stream: &StreamId,
) -> Result<Option<String>, Problem> {
    let first = state
        .private
        .inner()
        .read_stream(
            tenant,
            stream,
            Direction::Forwards,
            StreamStart::Boundary,
            1,
        )
        .await
        .map_err(Problem::from)?;
    Ok(first
        .first()
        .and_then(|event| subject_of_data(stream, event.data.get())))
}

impl<T: Personal> Personal for Vec<T> {
    fn redact(&mut self) {
        self.iter_mut().for_each(Personal::redact);
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        self.iter().for_each(|item| item.subjects(out));
    }
}

/// The listings: each line.
impl<T: Personal> Personal for Listing<T> {
    fn redact(&mut self) {
        self.items.redact();
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        self.items.subjects(out);
    }
}

/// `GET /v1/customers/{id}/timeline`: the event data of each entry, by its type's catalog
/// fields; the subjects are the customer and each entry's own (a lead, a merged customer).
impl Personal for Timeline {
    fn redact(&mut self) {
        for line in &mut self.entries {
            redact_data(&line.event_type, &mut line.data);
        }
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        for line in &self.entries {
            if carries_personal_data(&line.event_type, &line.data) {
                out.insert(customer_subject(&self.customer_id));
                out.extend(direct_subject(&line.stream_id, &line.data));
            }
        }
    }
}

/// `GET /v1/customers/{id}`, live and as of a past moment.
impl Personal for CustomerView {
    fn redact(&mut self) {
        redact_text(&mut self.name);
        redact_text(&mut self.email);
        redact_text(&mut self.phone);
        if let Some(satisfaction) = &mut self.satisfaction {
            if let Some(csat) = &mut satisfaction.latest_csat {
                redact_text(&mut csat.answer.comment);
            }
            if let Some(nps) = &mut satisfaction.latest_nps {
                redact_text(&mut nps.comment);
            }
        }
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        if plain_text(&self.name) || plain_text(&self.email) || plain_text(&self.phone) {
            out.insert(customer_subject(&self.customer_id));
        }
        if let Some(satisfaction) = &self.satisfaction {
            if let Some(csat) = satisfaction
                .latest_csat
                .as_ref()
                .filter(|c| plain_text(&c.answer.comment))
            {
                out.insert(customer_subject(&csat.customer_id));
            }
            if let Some(nps) = satisfaction
                .latest_nps
                .as_ref()
                .filter(|n| plain_text(&n.comment))
            {
                out.insert(customer_subject(&nps.customer_id));
            }
        }
    }
}

/// `GET /v1/customers`.
impl Personal for CustomerLine {
    fn redact(&mut self) {
        redact_text(&mut self.name);
        redact_text(&mut self.email);
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        if plain_text(&self.name) || plain_text(&self.email) {
            out.insert(customer_subject(&self.customer_id));
        }
    }
}

/// `GET /v1/opportunities`.
impl Personal for OpportunityLine {
    fn redact(&mut self) {
        redact_text(&mut self.opportunity.name);
        redact_text(&mut self.opportunity.lost_reason);
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        let opportunity = &self.opportunity;
        if plain_text(&opportunity.name) || plain_text(&opportunity.lost_reason) {
            out.insert(
                match (&opportunity.customer_id, &opportunity.opportunity_id) {
                    (Some(customer), _) => customer_subject(customer.as_str()),
                    (None, Some(id)) => format!("opportunity:{id}"),
                    (None, None) => "opportunity:?".to_owned(),
                },
            );
        }
    }
}

/// A case's subject, in the backlog and the case list.
impl Personal for Case {
    fn redact(&mut self) {
        redact_text(&mut self.subject);
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        if plain_text(&self.subject) {
            out.insert(match (&self.customer_id, &self.case_id) {
                (Some(customer), _) => customer_subject(customer.as_str()),
                (None, Some(id)) => format!("case:{id}"),
                (None, None) => "case:?".to_owned(),
            });
        }
    }
}

/// `GET /v1/service/backlog`.
impl Personal for Backlog {
    fn redact(&mut self) {
        for line in &mut self.open {
            line.case.redact();
        }
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        for line in &self.open {
            line.case.subjects(out);
        }
    }
}

/// `GET /v1/cases`.
impl Personal for CaseLine {
    fn redact(&mut self) {
        self.case.redact();
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        self.case.subjects(out);
    }
}

/// `GET /v1/leads`: the disqualification reason; its subject is the lead.
impl Personal for LeadLine {
    fn redact(&mut self) {
        redact_text(&mut self.lead.disqualified_reason);
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        if plain_text(&self.lead.disqualified_reason)
            && let Some(id) = &self.lead.lead_id
        {
            out.insert(lead_subject(id.as_str()));
        }
    }
}

/// `GET /v1/leads/funnel`: the disqualification reasons of every group; their subjects are
/// the leads that gave them.
impl Personal for LeadFunnel {
    fn redact(&mut self) {
        for counts in std::iter::once(&mut self.overall)
            .chain(self.by_source.values_mut())
            .chain(self.by_campaign.values_mut())
        {
            for reason in &mut counts.disqualified_reasons {
                if reason.reason != ERASED {
                    reason.reason = REDACTED.to_owned();
                }
            }
        }
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        for reason in &self.overall.disqualified_reasons {
            if reason.reason != ERASED && reason.reason != REDACTED {
                out.extend(reason.leads.iter().map(|id| lead_subject(id)));
            }
        }
    }
}

/// `GET /v1/customers/{id}/personal-data`: the profile and each event's fields. The document
/// is only ever answered to keys that read personal data; it goes through [`disclose`] like
/// every other answer, so its read is recorded.
impl Personal for SubjectData {
    fn redact(&mut self) {
        let profile = &mut self.profile;
        redact_text(&mut profile.name);
        redact_text(&mut profile.email);
        redact_text(&mut profile.phone);
        for event in &mut self.events {
            for value in event.fields.values_mut() {
                if plain(value) {
                    *value = Value::String(REDACTED.to_owned());
                }
            }
        }
    }

    fn subjects(&self, out: &mut BTreeSet<String>) {
        let profile = &self.profile;
        if plain_text(&profile.name) || plain_text(&profile.email) || plain_text(&profile.phone) {
            out.insert(customer_subject(&self.customer_id));
        }
        for event in &self.events {
            if event.fields.values().any(plain) {
                out.insert(customer_subject(&self.customer_id));
                out.extend(event.subject.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_data_is_redacted_by_the_catalog_fields_of_its_type() {
        let mut data = json!({"customer_id": "c-1", "kind": "person", "name": "Ada",
                              "email": null, "phone": "[erased]", "segment": "smb"});
        assert!(carries_personal_data("CustomerRegistered", &data));
        assert!(redact_data("CustomerRegistered", &mut data));
        assert_eq!(
            data,
            json!({"customer_id": "c-1", "kind": "person", "name": REDACTED,
                   "email": null, "phone": "[erased]", "segment": "smb"})
        );
        assert!(!carries_personal_data("CustomerRegistered", &data));
        let mut order = json!({"customer_id": "c-1", "order_id": "o-1"});
        assert!(!redact_data("OrderPlaced", &mut order));
    }

    #[test]
    fn direct_subjects_follow_the_stream_then_the_data() {
        assert_eq!(
            direct_subject("customer-c-1", &json!({})).as_deref(),
            Some("customer:c-1")
        );
        assert_eq!(
            direct_subject("lead-l-1", &json!({})).as_deref(),
            Some("lead:l-1")
        );
        assert_eq!(
            direct_subject("case-k-1", &json!({"customer_id": "c-2"})).as_deref(),
            Some("customer:c-2")
        );
        assert_eq!(direct_subject("case-k-1", &json!({"reason": "x"})), None);
    }
}
