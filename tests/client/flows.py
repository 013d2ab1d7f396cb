"""The main flows of the API's three users, driven through a client generated from the
OpenAPI document by openapi-python-client (a third-party generator): a service that emits
events, an analyst, an auditor. Run by tests/client/run against the real crm-api binary;
every answer is parsed by the generated models, so a document that does not match what the
server sends fails here.

    python flows.py BASE_URL ADMIN_KEY INGEST_KEY ANALYST_KEY AUDITOR_KEY
"""

import datetime
import sys
import uuid

from crm_client import AuthenticatedClient
from crm_client.api.audit import list_access_log, verify_log
from crm_client.api.customers import get_customer, get_customer_timeline, list_customers
from crm_client.api.events import append_events, list_events
from crm_client.api.privacy import erase_customer, get_personal_data
from crm_client.api.sales import get_pipeline, list_opportunities
from crm_client.api.service import get_backlog, get_sla_targets, list_cases, set_sla_targets
from crm_client.models import (
    CustomerView,
    EventBatch,
    IncomingEvent,
    IncomingEventData,
    IncomingEventType,
    IncomingMetadata,
    OpportunityStatus,
    Outcome,
    Problem,
    SlaTarget,
    SlaTargetsBody,
)

base, admin_key, ingest_key, analyst_key, auditor_key = sys.argv[1:6]


def client(key):
    return AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)


admin, ingest, analyst, auditor = map(client, (admin_key, ingest_key, analyst_key, auditor_key))


def event(kind, data, occurred_at=None, **extra):
    return IncomingEvent(
        type_=IncomingEventType(kind),
        data=IncomingEventData.from_dict(data),
        occurred_at=occurred_at,
        **extra,
    )


def expect(answer, status):
    assert answer.status_code == status, (answer.status_code, answer.content)
    return answer.parsed


march = lambda day: datetime.datetime(2026, 3, day, 10, tzinfo=datetime.timezone.utc)

# --- A service emitting events -------------------------------------------------------------
batch = EventBatch(
    events=[
        event(
            "CustomerRegistered",
            {"customer_id": "c-7", "kind": "person", "name": "Grace Hopper", "email": "grace@example.com"},
            metadata=IncomingMetadata(actor="signup-form", source="web"),
        ),
        event("OrderPlaced", {"customer_id": "c-7", "order_id": "o-1", "amount": "40.00", "currency": "EUR"}, march(1)),
        event("OrderPlaced", {"customer_id": "c-7", "order_id": "o-2", "amount": "60.00", "currency": "EUR"}, march(8)),
        event(
            "OpportunityOpened",
            {"opportunity_id": "op-7", "customer_id": "c-7", "name": "Upgrade", "amount": "900.00",
             "currency": "EUR", "stage": "Proposal", "close_date": "2026-05-31"},
            march(2),
        ),
        event(
            "CaseOpened",
            {"case_id": "k-7", "customer_id": "c-7", "subject": "Invoice", "channel": "email", "priority": "high"},
            march(3),
        ),
    ]
)
outcome = expect(append_events.sync_detailed(client=ingest, body=batch, idempotency_key="signup-7"), 201)
assert isinstance(outcome, Outcome)
assert outcome.appended == 5 and outcome.duplicates == 0, outcome
assert [e.stream for e in outcome.events][:2] == ["customer-c-7", "customer-c-7"]
last = outcome.last_position

# The same request again is acknowledged, not written twice.
again = expect(append_events.sync_detailed(client=ingest, body=batch, idempotency_key="signup-7"), 200)
assert again.duplicates == 5 and all(e.duplicate for e in again.events)

# An expected revision that does not hold is a 409 naming the event.
stale = EventBatch(events=[event("InteractionLogged", {"customer_id": "c-7", "interaction_id": "i-1",
                                                        "channel": "phone", "direction": "inbound"},
                                 expected_revision=0)])
conflict = expect(append_events.sync_detailed(client=ingest, body=stale), 409)
assert isinstance(conflict, Problem) and conflict.event_index == 0, conflict

# An invalid event is a 422 naming the field; nothing is written.
bad = EventBatch(events=[event("OrderPlaced", {"customer_id": "c-7", "order_id": "o-3", "amount": "-1", "currency": "EUR"})])
invalid = expect(append_events.sync_detailed(client=ingest, body=bad), 422)
assert isinstance(invalid, Problem) and "amount" in invalid.detail, invalid

# --- An analyst ----------------------------------------------------------------------------
view = expect(get_customer.sync_detailed("c-7", client=analyst, min_position=last), 200)
assert isinstance(view, CustomerView)
assert view.name == "Grace Hopper", view.name  # the analyst key reads personal data
assert view.orders.count == 2
assert view.orders.by_currency[0].net.amount == "100.00"
then = expect(get_customer.sync_detailed("c-7", client=analyst, as_of=march(5)), 200)
assert then.orders.count == 1, then.orders
page = expect(list_customers.sync_detailed(client=analyst, search="hopper", min_position=last), 200)
assert [c.customer_id for c in page.items] == ["c-7"]
pipeline = expect(get_pipeline.sync_detailed(client=analyst, min_position=last), 200)
assert pipeline.open_ == 1 and pipeline.by_stage[0].stage == "Proposal", pipeline
deals = expect(list_opportunities.sync_detailed(client=analyst, status=OpportunityStatus.OPEN, min_position=last), 200)
assert deals.items[0].opportunity_id == "op-7"
backlog = expect(get_backlog.sync_detailed(client=analyst, min_position=last, at=march(4)), 200)
assert [c.case_id for c in backlog.open_] == ["k-7"] and backlog.first_response_breaches == 1, backlog
cases = expect(list_cases.sync_detailed(client=analyst, opened_from=march(1), min_position=last), 200)
assert [(c.case_id, c.subject) for c in cases.items] == [("k-7", "Invoice")], cases.items
log = expect(list_events.sync_detailed(client=analyst, after=0, limit=100), 200)
assert [e.event_type for e in log.events][:2] == ["CustomerRegistered", "OrderPlaced"]

# An admin sets the SLA targets (a `SlaTargetsSet` event, in force for cases opened from
# now on); the analyst reads them back.
targets = SlaTargetsBody(**{p: SlaTarget(first_response_minutes=60 * (i + 1), resolution_minutes=600 * (i + 1))
                            for i, p in enumerate(["urgent", "high", "normal", "low"])})
recorded = expect(set_sla_targets.sync_detailed(client=admin, body=targets), 200)
read = expect(get_sla_targets.sync_detailed(client=analyst, min_position=recorded.position), 200)
assert read.high.first_response_minutes == 120 and read.set_position == recorded.position, read

# --- An auditor ----------------------------------------------------------------------------
timeline = expect(get_customer_timeline.sync_detailed("c-7", client=auditor, min_position=last), 200)
assert [e.event_type for e in timeline.entries][:1] == ["CustomerRegistered"]
assert timeline.entries[0].actor == "signup-form" and timeline.entries[0].data["name"] == "[redacted]"
verified = expect(verify_log.sync_detailed(client=auditor), 200)
# The five events and the SLA targets set.
assert verified.intact and verified.events_checked == 6, verified
reads = expect(list_access_log.sync_detailed(client=auditor, subject="customer:c-7"), 200)
assert any(r.route == "GET /v1/customers/{id}" for r in reads.items), [r.route for r in reads.items]
refused = expect(get_personal_data.sync_detailed("c-7", client=auditor), 403)
assert isinstance(refused, Problem)

# Erasure, then the 360 view and the timeline no longer hold the personal data.
erasure = expect(erase_customer.sync_detailed("c-7", client=admin), 200)
assert erasure.subject == "customer:c-7" and not erasure.already_erased
gone = expect(get_customer.sync_detailed("c-7", client=analyst, min_position=erasure.position), 200)
assert gone.status == "erased" and gone.name is None, gone
print("client flows: ok")
