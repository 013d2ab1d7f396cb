//! Sample event data for tests: for every type a fully populated event (two for the campaign
//! member types, whose customer/lead choice is exclusive) and a minimal one, both written in
//! canonical form, so `to_data` must reproduce them exactly.

use serde_json::{Value, json};

/// Fully populated events in canonical stored form.
pub(crate) fn full() -> Vec<(&'static str, Value)> {
    vec![
        (
            "CustomerRegistered",
            json!({"customer_id": "c-42", "kind": "person", "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000", "segment": "smb", "owner": "u-7"}),
        ),
        (
            "CustomerProfileUpdated",
            json!({"customer_id": "c-42", "name": "Ada King", "email": "ada@king.example", "phone": "+44 20 7946 0001", "segment": "enterprise", "owner": "u-8"}),
        ),
        (
            "CustomerConsentChanged",
            json!({"customer_id": "c-42", "channel": "email", "purpose": "marketing", "granted": true}),
        ),
        (
            "InteractionLogged",
            json!({"customer_id": "c-42", "interaction_id": "i-9", "channel": "phone", "direction": "inbound", "subject": "Billing question", "summary": "Asked about the March invoice", "purpose": "service"}),
        ),
        (
            "OrderPlaced",
            json!({"customer_id": "c-42", "order_id": "o-1001", "amount": "11.77", "currency": "USD", "lines": [{"product_id": "p-tea", "name": "Green tea", "quantity": 3, "unit_price": "2.59"}, {"product_id": "p-mug", "name": "Mug", "quantity": 1, "unit_price": "5.00"}], "discount": "1.00"}),
        ),
        (
            "OrderRefunded",
            json!({"customer_id": "c-42", "order_id": "o-1001", "amount": "1.50", "currency": "USD", "reason": "damaged box"}),
        ),
        (
            "CustomerMerged",
            json!({"customer_id": "c-43", "into_customer_id": "c-42"}),
        ),
        ("CustomerErased", json!({"customer_id": "c-42"})),
        (
            "LeadCaptured",
            json!({"lead_id": "l-1", "name": "Grace Hopper", "email": "grace@example.com", "phone": "+1 555 0100", "company": "Hopper Consulting", "source": "web_form", "campaign_id": "cmp-1", "owner": "u-7"}),
        ),
        ("LeadQualified", json!({"lead_id": "l-1"})),
        (
            "LeadDisqualified",
            json!({"lead_id": "l-1", "reason": "no budget"}),
        ),
        (
            "LeadConverted",
            json!({"lead_id": "l-1", "customer_id": "c-42", "opportunity_id": "op-5"}),
        ),
        ("LeadErased", json!({"lead_id": "l-2"})),
        (
            "OpportunityOpened",
            json!({"opportunity_id": "op-5", "customer_id": "c-42", "name": "Renewal 2027", "amount": "12000.00", "currency": "EUR", "stage": "Prospecting", "close_date": "2027-01-31", "owner": "u-7", "probability": 15, "forecast_category": "Best Case"}),
        ),
        (
            "OpportunityStageChanged",
            json!({"opportunity_id": "op-5", "stage": "Proposal", "probability": 60, "forecast_category": "Commit"}),
        ),
        (
            "OpportunityUpdated",
            json!({"opportunity_id": "op-5", "name": "Renewal 2027 (3 years)", "amount": "30000", "currency": "JPY", "close_date": "2027-02-28", "owner": "u-8", "probability": 70, "forecast_category": "Commit"}),
        ),
        ("OpportunityWon", json!({"opportunity_id": "op-5"})),
        (
            "OpportunityLost",
            json!({"opportunity_id": "op-5", "reason": "price"}),
        ),
        (
            "CaseOpened",
            json!({"case_id": "k-3", "customer_id": "c-42", "subject": "Cannot log in", "channel": "email", "priority": "high", "description": "Password reset mail never arrives"}),
        ),
        ("CaseAssigned", json!({"case_id": "k-3", "agent": "u-9"})),
        ("CaseResponded", json!({"case_id": "k-3", "agent": "u-9"})),
        (
            "CaseEscalated",
            json!({"case_id": "k-3", "reason": "VIP customer", "priority": "urgent"}),
        ),
        (
            "CaseResolved",
            json!({"case_id": "k-3", "resolution": "Mail filter fixed", "root_cause": "carrier_delay"}),
        ),
        (
            "CaseReopened",
            json!({"case_id": "k-3", "reason": "It happened again"}),
        ),
        ("CaseClosed", json!({"case_id": "k-3"})),
        (
            "CampaignLaunched",
            json!({"campaign_id": "cmp-1", "name": "Spring sale", "channel": "email", "medium": "newsletter"}),
        ),
        (
            "CampaignMemberAdded",
            json!({"campaign_id": "cmp-1", "customer_id": "c-42"}),
        ),
        (
            "CampaignMemberAdded",
            json!({"campaign_id": "cmp-1", "lead_id": "l-1"}),
        ),
        (
            "CampaignMemberResponded",
            json!({"campaign_id": "cmp-1", "customer_id": "c-42", "response": "clicked"}),
        ),
        (
            "CampaignMemberResponded",
            json!({"campaign_id": "cmp-1", "lead_id": "l-1", "response": "unsubscribed"}),
        ),
        (
            "CampaignCostRecorded",
            json!({"campaign_id": "cmp-1", "amount": "2500.00", "currency": "EUR"}),
        ),
        (
            "ContactLinked",
            json!({"customer_id": "c-42", "account_id": "c-1", "role": "buyer"}),
        ),
        (
            "ContactUnlinked",
            json!({"customer_id": "c-42", "account_id": "c-1"}),
        ),
        (
            "TaskCreated",
            json!({"task_id": "t-1", "subject_type": "opportunity", "subject_id": "op-5", "owner": "u-7", "due_at": "2027-01-31T17:00:00Z", "title": "Send the renewal quote"}),
        ),
        (
            "TaskRescheduled",
            json!({"task_id": "t-1", "due_at": "2027-02-03T09:30:00.250Z"}),
        ),
        ("TaskCompleted", json!({"task_id": "t-1"})),
        ("TaskCancelled", json!({"task_id": "t-1"})),
        (
            "QuotaSet",
            json!({"owner": "u-7", "period": "2026-Q2", "amount": "50000.00", "currency": "EUR"}),
        ),
        ("ConsentRegimeSet", json!({"regime": "opt_out"})),
        (
            "CasePaused",
            json!({"case_id": "k-3", "reason": "Waiting for the customer's logs"}),
        ),
        ("CaseResumed", json!({"case_id": "k-3"})),
        (
            "SlaTargetsSet",
            json!({"low": {"first_response_minutes": 1440, "resolution_minutes": 10080}, "normal": {"first_response_minutes": 480, "resolution_minutes": 4320}, "high": {"first_response_minutes": 240, "resolution_minutes": 1440}, "urgent": {"first_response_minutes": 60, "resolution_minutes": 240}, "warning_percent": 80}),
        ),
        (
            "BusinessCalendarSet",
            json!({"time_zone": "Europe/Paris", "hours": {"monday": [["09:00", "12:30"], ["13:30", "17:30"]], "tuesday": [["09:00", "17:30"]], "wednesday": [["09:00", "17:30"]], "thursday": [["09:00", "17:30"]], "friday": [["09:00", "17:00"]], "saturday": [["10:00", "24:00"]], "sunday": []}, "holidays": ["2026-12-25", "2027-01-01"]}),
        ),
        ("BusinessCalendarCleared", json!({})),
        (
            "ComplaintCategoriesSet",
            json!({"categories": ["billing", "delivery"], "causes": ["carrier_delay", "pricing_error"]}),
        ),
        (
            "CaseMarkedComplaint",
            json!({"case_id": "k-3", "category": "billing"}),
        ),
        (
            "CsatRecorded",
            json!({"case_id": "k-3", "score": 4, "comment": "Quick and friendly"}),
        ),
        (
            "WorkflowRuleSet",
            json!({"rule_id": "assign-cases", "name": "Assign new cases round-robin",
                "enabled": false,
                "trigger": {"event": "CaseOpened",
                    "conditions": [{"field": "data.priority", "op": "in", "value": ["high", "urgent"]}]},
                "actions": [{"append": {"type": "CaseAssigned", "data": {
                    "case_id": "{{data.case_id}}", "agent": {"round_robin": ["ana", "ben"]}}}}]}),
        ),
        ("WorkflowRuleRemoved", json!({"rule_id": "assign-cases"})),
        (
            "NpsAnswered",
            json!({"customer_id": "c-42", "answer_id": "nps-2026-q1", "score": 9, "comment": "Would recommend"}),
        ),
    ]
}

/// Events with only their required fields (plus the minimum a value rule demands).
pub(crate) fn minimal() -> Vec<(&'static str, Value)> {
    vec![
        (
            "CustomerRegistered",
            json!({"customer_id": "c-42", "kind": "company", "name": "Acme Ltd"}),
        ),
        (
            "CustomerProfileUpdated",
            json!({"customer_id": "c-42", "segment": "smb"}),
        ),
        (
            "CustomerConsentChanged",
            json!({"customer_id": "c-42", "channel": "sms", "purpose": "service", "granted": false}),
        ),
        (
            "InteractionLogged",
            json!({"customer_id": "c-42", "interaction_id": "i-9", "channel": "in_person", "direction": "outbound"}),
        ),
        (
            "OrderPlaced",
            json!({"customer_id": "c-42", "order_id": "o-1", "amount": "500", "currency": "JPY"}),
        ),
        (
            "OrderRefunded",
            json!({"customer_id": "c-42", "order_id": "o-1", "amount": "0.001", "currency": "KWD"}),
        ),
        (
            "CustomerMerged",
            json!({"customer_id": "c-43", "into_customer_id": "c-42"}),
        ),
        ("CustomerErased", json!({"customer_id": "c-42"})),
        (
            "LeadCaptured",
            json!({"lead_id": "l-1", "email": "x@example.com", "source": "referral"}),
        ),
        ("LeadQualified", json!({"lead_id": "l-1"})),
        (
            "LeadDisqualified",
            json!({"lead_id": "l-1", "reason": "duplicate"}),
        ),
        (
            "LeadConverted",
            json!({"lead_id": "l-1", "customer_id": "c-42"}),
        ),
        ("LeadErased", json!({"lead_id": "l-2"})),
        (
            "OpportunityOpened",
            json!({"opportunity_id": "op-5", "customer_id": "c-42", "name": "Pilot", "amount": "0.00", "currency": "EUR", "stage": "Qualification", "close_date": "2026-12-31"}),
        ),
        (
            "OpportunityStageChanged",
            json!({"opportunity_id": "op-5", "stage": "Negotiation"}),
        ),
        (
            "OpportunityUpdated",
            json!({"opportunity_id": "op-5", "close_date": "2027-03-31"}),
        ),
        ("OpportunityWon", json!({"opportunity_id": "op-5"})),
        ("OpportunityLost", json!({"opportunity_id": "op-5"})),
        (
            "CaseOpened",
            json!({"case_id": "k-3", "customer_id": "c-42", "subject": "Broken", "channel": "web", "priority": "low"}),
        ),
        ("CaseAssigned", json!({"case_id": "k-3", "agent": "u-9"})),
        ("CaseResponded", json!({"case_id": "k-3", "agent": "u-9"})),
        ("CaseEscalated", json!({"case_id": "k-3"})),
        ("CaseResolved", json!({"case_id": "k-3"})),
        ("CaseReopened", json!({"case_id": "k-3"})),
        ("CaseClosed", json!({"case_id": "k-3"})),
        (
            "CampaignLaunched",
            json!({"campaign_id": "cmp-1", "name": "Spring sale"}),
        ),
        (
            "CampaignMemberAdded",
            json!({"campaign_id": "cmp-1", "lead_id": "l-1"}),
        ),
        (
            "CampaignMemberResponded",
            json!({"campaign_id": "cmp-1", "customer_id": "c-42", "response": "opened"}),
        ),
        (
            "CampaignCostRecorded",
            json!({"campaign_id": "cmp-1", "amount": "0.01", "currency": "USD"}),
        ),
        (
            "ContactLinked",
            json!({"customer_id": "c-42", "account_id": "c-1", "role": "billing"}),
        ),
        (
            "ContactUnlinked",
            json!({"customer_id": "c-42", "account_id": "c-1"}),
        ),
        (
            "TaskCreated",
            json!({"task_id": "t-1", "subject_type": "customer", "subject_id": "c-42", "owner": "u-7", "due_at": "2027-01-31T17:00:00Z", "title": "Call back"}),
        ),
        (
            "TaskRescheduled",
            json!({"task_id": "t-1", "due_at": "2027-02-01T08:00:00Z"}),
        ),
        ("TaskCompleted", json!({"task_id": "t-1"})),
        ("TaskCancelled", json!({"task_id": "t-1"})),
        (
            "QuotaSet",
            json!({"owner": "u-7", "period": "2026-03", "amount": "0", "currency": "JPY"}),
        ),
        ("ConsentRegimeSet", json!({"regime": "opt_in"})),
        ("CasePaused", json!({"case_id": "k-3"})),
        ("CaseResumed", json!({"case_id": "k-3"})),
        (
            "SlaTargetsSet",
            json!({"low": {"first_response_minutes": 1, "resolution_minutes": 1}, "normal": {"first_response_minutes": 1, "resolution_minutes": 1}, "high": {"first_response_minutes": 1, "resolution_minutes": 1}, "urgent": {"first_response_minutes": 1, "resolution_minutes": 1}}),
        ),
        (
            "BusinessCalendarSet",
            json!({"time_zone": "UTC", "hours": {"monday": [], "tuesday": [], "wednesday": [], "thursday": [], "friday": [], "saturday": [], "sunday": [["00:00", "00:01"]]}}),
        ),
        ("BusinessCalendarCleared", json!({})),
        (
            "ComplaintCategoriesSet",
            json!({"categories": ["billing"], "causes": ["other"]}),
        ),
        (
            "CaseMarkedComplaint",
            json!({"case_id": "k-3", "category": "delivery"}),
        ),
        ("CsatRecorded", json!({"case_id": "k-3", "score": 1})),
        (
            "WorkflowRuleSet",
            json!({"rule_id": "win-back", "name": "Win back",
                "trigger": {"schedule": "customer_without_order", "days": 180},
                "actions": [{"webhook": {"subscription": "wh_billing"}}]}),
        ),
        ("WorkflowRuleRemoved", json!({"rule_id": "win-back"})),
        (
            "NpsAnswered",
            json!({"customer_id": "c-42", "answer_id": "a-1", "score": 0}),
        ),
    ]
}

/// The emitter examples of the design direction, exactly as written there.
pub(crate) const DIRECTION_EXAMPLES: &str = r#"
{"type":"CustomerRegistered","data":{"customer_id":"c-42","kind":"person","name":"Ada Lovelace","email":"ada@example.com","phone":"+44 20 7946 0000","segment":"smb","owner":"u-7"}}
{"type":"InteractionLogged","data":{"customer_id":"c-42","interaction_id":"i-9","channel":"phone","direction":"inbound","subject":"Billing question","summary":"Asked about the March invoice"},"occurred_at":"2026-03-02T10:15:00Z"}
{"type":"OrderPlaced","data":{"customer_id":"c-42","order_id":"o-1001","amount":"11.77","currency":"USD"},"occurred_at":"2026-03-02T11:00:00Z"}
{"type":"OpportunityOpened","data":{"opportunity_id":"op-5","customer_id":"c-42","name":"Renewal 2027","amount":"12000.00","currency":"EUR","stage":"Prospecting","close_date":"2027-01-31","owner":"u-7"}}
{"type":"OpportunityStageChanged","data":{"opportunity_id":"op-5","stage":"Proposal"}}
{"type":"OpportunityWon","data":{"opportunity_id":"op-5"}}
{"type":"OpportunityLost","data":{"opportunity_id":"op-5","reason":"price"}}
{"type":"CaseOpened","data":{"case_id":"k-3","customer_id":"c-42","subject":"Cannot log in","channel":"email","priority":"high"}}
{"type":"CaseResponded","data":{"case_id":"k-3","agent":"u-9"}}
{"type":"CaseClosed","data":{"case_id":"k-3"}}
"#;
