//! Rules read from their documents, refusals naming the member, and plans as pure functions
//! of (rule, version, trigger).

use super::*;

fn rule(value: Value) -> Rule {
    Rule::parse(&value).expect("a valid rule")
}

fn refused(value: Value) -> String {
    Rule::parse(&value).expect_err("refused").to_string()
}

fn follow_up() -> Value {
    json!({
        "name": "Follow up on negotiation",
        "trigger": {"event": "OpportunityStageChanged",
            "conditions": [{"field": "data.stage", "op": "eq", "value": "negotiation"}]},
        "actions": [{"append": {"type": "TaskCreated", "data": {
            "task_id": "follow-{{data.opportunity_id}}",
            "subject_type": "opportunity",
            "subject_id": "{{data.opportunity_id}}",
            "owner": {"round_robin": ["ana", "ben"]},
            "due_at": "{{at+2d}}",
            "title": "Call back ({{rule.id}} v{{rule.version}})"
        }}}]
    })
}

fn firing<'a>(data: &'a Value, count: u64, cause: Option<&'a Cause>) -> Firing<'a> {
    Firing {
        tenant: "acme",
        rule_id: "follow-up",
        version: 2,
        key: "event:opportunity-o-1:0195d7a4-0000-7000-8000-00000000abcd".into(),
        data,
        at: "2026-03-01T10:00:00Z".parse().expect("time"),
        event: Some(EventRef {
            id: Uuid::nil(),
            stream: "opportunity-o-1",
            event_type: "OpportunityStageChanged",
            position: 42,
        }),
        count,
        cause,
    }
}

#[test]
fn an_event_rule_renders_its_actions_from_the_trigger() {
    let rule = rule(follow_up());
    let data = json!({"opportunity_id": "o-1", "stage": "negotiation"});
    let subject = Subject {
        event_type: "OpportunityStageChanged",
        stream: "opportunity-o-1",
        data: &data,
        metadata: &Value::Null,
    };
    assert!(rule.triggered_by(&subject));
    let other = json!({"opportunity_id": "o-1", "stage": "proposal"});
    assert!(!rule.triggered_by(&Subject {
        data: &other,
        ..subject
    }));
    let plan = rule.plan(&firing(&data, 3, None)).expect("a plan");
    assert_eq!(plan.events.len(), 1);
    let event = &plan.events[0];
    assert_eq!(event.event_type, "TaskCreated");
    assert_eq!(
        event.data,
        json!({
            "task_id": "follow-o-1", "subject_type": "opportunity", "subject_id": "o-1",
            "owner": "ben", "due_at": "2026-03-03T10:00:00.000000Z",
            "title": "Call back (follow-up v2)"
        })
    );
    assert_eq!(event.occurred_at, firing(&data, 3, None).at);
    assert_eq!(plan.cause.depth, 1);
    assert_eq!(plan.cause.chain, vec!["follow-up".to_owned()]);
    // The same trigger gives the same events, whatever the run; the next firing picks the
    // next name.
    assert_eq!(rule.plan(&firing(&data, 3, None)).expect("plan"), plan);
    let next = rule.plan(&firing(&data, 4, None)).expect("plan");
    assert_eq!(next.events[0].data["owner"], "ana");
    assert_eq!(
        next.events[0].id, plan.events[0].id,
        "the id depends on the trigger only"
    );
}

#[test]
fn ids_are_a_function_of_rule_version_and_trigger() {
    let a = action_id("acme", "r", 1, "event:s:1", 0);
    assert_eq!(a, action_id("acme", "r", 1, "event:s:1", 0));
    assert_ne!(a, action_id("acme", "r", 2, "event:s:1", 0));
    assert_ne!(a, action_id("acme", "r", 1, "event:s:2", 0));
    assert_ne!(a, action_id("acme", "r", 1, "event:s:1", 1));
    assert_ne!(a, action_id("other", "r", 1, "event:s:1", 0));
}

#[test]
fn chains_stop_at_the_depth_limit_and_on_cycles() {
    let rule = rule(follow_up());
    let data = json!({"opportunity_id": "o-1", "stage": "negotiation"});
    let deep = Cause {
        rule: "r4".into(),
        version: 1,
        depth: MAX_DEPTH,
        chain: vec![
            "r1".into(),
            "r2".into(),
            "r3".into(),
            "r4".into(),
            "r5".into(),
        ],
        trigger: "k".into(),
    };
    assert!(matches!(
        rule.plan(&firing(&data, 0, Some(&deep))),
        Err(Stop::DepthLimit { .. })
    ));
    let cycle = Cause {
        rule: "other".into(),
        version: 1,
        depth: 2,
        chain: vec!["follow-up".into(), "other".into()],
        trigger: "k".into(),
    };
    let stop = rule
        .plan(&firing(&data, 0, Some(&cycle)))
        .expect_err("a cycle");
    assert_eq!(
        stop.to_string(),
        "cycle stopped: this rule is already in the chain follow-up → other → follow-up"
    );
    let shallow = Cause {
        chain: vec!["other".into()],
        depth: 1,
        ..cycle
    };
    let plan = rule
        .plan(&firing(&data, 0, Some(&shallow)))
        .expect("a plan");
    assert_eq!(plan.cause.depth, 2);
    assert_eq!(
        plan.cause.chain,
        vec!["other".to_owned(), "follow-up".into()]
    );
}

#[test]
fn a_missing_field_stops_the_action_naming_it() {
    let rule = rule(json!({
        "name": "Assign to owner",
        "trigger": {"event": "OpportunityOpened"},
        "actions": [{"append": {"type": "TaskCreated", "data": {
            "task_id": "t-{{data.opportunity_id}}", "subject_type": "opportunity",
            "subject_id": "{{data.opportunity_id}}", "owner": "{{data.owner}}",
            "due_at": "{{at}}", "title": "Qualify"}}}]
    }));
    let data = json!({"opportunity_id": "o-1"});
    let stop = rule.plan(&firing(&data, 0, None)).expect_err("no owner");
    assert_eq!(
        stop.to_string(),
        "actions[0].append.data.owner: {{data.owner}}: the trigger has no such field"
    );
}

#[test]
fn schedules_fire_relative_to_their_fact() {
    let rule = rule(json!({
        "name": "Escalate before breach",
        "trigger": {"schedule": "case_first_response_due", "offset_minutes": -30,
            "conditions": [{"field": "data.priority", "op": "in", "value": ["high", "urgent"]}]},
        "actions": [{"append": {"type": "CaseEscalated",
            "data": {"case_id": "{{data.case_id}}", "priority": "urgent"}}},
            {"webhook": {"subscription": "wh_1"}}]
    }));
    let Trigger::Schedule { schedule, .. } = &rule.trigger else {
        panic!("a schedule")
    };
    let due: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().expect("time");
    assert_eq!(
        schedule.due(due),
        "2026-03-01T09:30:00Z"
            .parse::<DateTime<Utc>>()
            .expect("time")
    );
    assert!(rule.fact_passes(&json!({"case_id": "k-1", "priority": "high"})));
    assert!(!rule.fact_passes(&json!({"case_id": "k-1", "priority": "low"})));
    let data = json!({"case_id": "k-1", "priority": "high", "customer_id": "c-1"});
    let plan = rule
        .plan(&Firing {
            event: None,
            key: format!("case_first_response_due:k-1:{}", due.timestamp_micros()),
            at: schedule.due(due),
            ..firing(&data, 0, None)
        })
        .expect("a plan");
    assert_eq!(
        plan.events[0].data,
        json!({"case_id": "k-1", "priority": "urgent"})
    );
    assert_eq!(plan.calls.len(), 1);
    assert_eq!(plan.calls[0].subscription, "wh_1");
    assert_eq!(plan.calls[0].payload["trigger"]["data"]["case_id"], "k-1");
    let days = Schedule::CustomerWithoutOrder { days: 180 };
    assert_eq!(
        days.due(due),
        "2026-08-28T10:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("time")
    );
}

#[test]
fn the_stored_document_reads_back_as_the_same_rule() {
    for document in [
        follow_up(),
        json!({"name": "Win-back", "enabled": false,
            "trigger": {"schedule": "customer_without_order", "days": 180},
            "actions": [{"webhook": {"subscription": "wh_billing"}}]}),
        json!({"name": "Stuck deals",
            "trigger": {"schedule": "opportunity_in_stage", "days": 14, "stages": ["proposal"]},
            "actions": [{"append": {"type": "TaskCreated", "data": {
                "task_id": "stuck-{{data.opportunity_id}}", "subject_type": "opportunity",
                "subject_id": "{{data.opportunity_id}}", "owner": "{{data.owner}}",
                "due_at": "{{at+1d}}", "title": "Unblock"}}}]}),
    ] {
        let rule = rule(document);
        assert_eq!(Rule::parse(&rule.to_value()).expect("reads back"), rule);
    }
}

#[test]
fn refusals_name_the_member() {
    let cases = [
        (json!([]), "definition: must be a JSON object"),
        (json!({"trigger": {}, "actions": []}), "name: required"),
        (
            json!({"name": "x", "trigger": {"event": "Nope"}, "actions": []}),
            "trigger.event: \"Nope\" is not an event type",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened",
                "conditions": [{"field": "data.subject", "op": "exists"}]}, "actions": []}),
            "trigger.conditions[0].field: \"subject\" holds personal data",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened"}, "actions": []}),
            "actions: between 1 and 10",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened"},
                "actions": [{"append": {"type": "CaseEscalated",
                    "data": {"case_id": "{{data.case_id}}", "reason": "late"}}}]}),
            "actions[0].append.data.reason: holds personal data",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened"},
                "actions": [{"append": {"type": "CaseEscalated",
                    "data": {"case_id": "{{data.subject}}"}}}]}),
            "actions[0].append.data.case_id: {{data.subject}}: the trigger's readable fields",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened"},
                "actions": [{"append": {"type": "ConsentRegimeSet", "data": {"regime": "opt_out"}}}]}),
            "actions[0].append.type: a rule cannot change settings",
        ),
        (
            json!({"name": "x", "trigger": {"schedule": "customer_without_order", "days": 0},
                "actions": [{"webhook": {"subscription": "wh"}}]}),
            "trigger.days: between 1 and 3650",
        ),
        (
            json!({"name": "x", "trigger": {"schedule": "customer_without_order", "days": 9},
                "actions": [{"append": {"type": "CaseAssigned", "data": {"case_id": "k",
                    "agent": {"round_robin": ["a"]}}}}]}),
            "actions[0].append.data.agent.round_robin: round-robin picks follow",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened"},
                "actions": [{"append": {"type": "CaseAssigned", "data": {"case_id": "{{data.case_id",
                    "agent": "a"}}}]}),
            "actions[0].append.data.case_id: a placeholder {{ is not closed",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened"},
                "actions": [{"append": {"type": "CaseAssigned", "data": {"case_id": "{{at+2w}}",
                    "agent": "a"}}}]}),
            "actions[0].append.data.case_id: {{at+2w}} is not a placeholder",
        ),
        (
            json!({"name": "x", "trigger": {"event": "CaseOpened", "schedule": "x"},
                "actions": []}),
            "trigger: give either event or schedule",
        ),
    ];
    for (document, expected) in cases {
        let message = refused(document.clone());
        assert!(
            message.starts_with(expected),
            "{document}: {message:?} should start with {expected:?}"
        );
    }
}
