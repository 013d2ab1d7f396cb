//! The HTTP API end to end: the application as `crm-api serve` builds it, on a free loopback
//! port, over real HTTP. One suite, written once in `suite.rs`, run on a fresh SQLite store
//! and on a fresh PostgreSQL database; `fuzz.rs` sends random and malformed requests.

mod analytics;
mod analytics_sales;
mod campaigns;
mod consent;
mod customer_analytics;
mod errors;
mod fixture;
mod fuzz;
mod keys;
mod leads;
mod lists;
mod parking;
mod privacy;
mod products;
mod proofs;
mod quotas;
mod sales;
mod service;
mod service_quality;
mod storable;
mod suite;
mod webhooks;
mod workflows;

use fixture::App;

macro_rules! api {
    ($backend:ident, $with:ident) => {
        mod $backend {
            use super::*;
            api!(@tests $backend $with:
                ingest_then_every_query_reads_its_writes,
                replayed_batches_are_acknowledged_as_duplicates_and_write_nothing,
                conflicts_are_409_name_the_event_and_write_nothing_of_the_batch,
                every_error_class_is_problem_json_naming_what_was_wrong,
                a_tenant_never_reads_or_writes_another_tenants_data,
                roles_limit_what_each_key_may_do,
                read_your_writes_waits_then_answers_503_with_the_position,
                min_position_beyond_the_head_is_a_400_at_once,
                money_totals_never_wrap,
                past_views_fold_the_log_at_a_business_time_a_recording_time_or_a_position,
                the_live_stream_sends_past_events_then_new_ones_and_resumes_by_last_event_id,
                concurrent_writers_to_one_stream_never_break_its_rules,
                erased_customers_timelines_hide_personal_fields,
                metrics_and_the_openapi_document_describe_the_service,
                random_and_malformed_requests_never_get_a_5xx,
                a_writer_beside_the_api_is_seen_before_the_next_check,
                personal_fields_are_redacted_on_every_get_route_without_the_flag,
                subject_access_lists_every_personal_field_with_its_event,
                the_access_log_records_who_read_whose_personal_fields,
            );
            api!(@private $backend $with:
                personal_fields_are_sealed_in_the_log_and_read_back_in_plain,
                erasure_removes_personal_data_from_every_answer_and_every_file,
                leads_are_erased_alone_only_while_never_converted,
                a_replayed_id_must_carry_the_same_data,
                a_reused_idempotency_key_must_carry_the_same_body,
                metadata_keys_outside_the_catalog_are_refused,
            );
            api!(@storable $backend $with:
                nul_in_text_is_refused_naming_the_field,
                events_stored_before_the_rule_still_project,
            );
            api!(@in errors $backend $with:
                a_batch_lists_every_invalid_event_and_writes_nothing,
            );
            api!(@in webhooks $backend $with:
                webhook_subscriptions_are_admin_only_per_tenant_and_checked,
            );
            api!(@in keys $backend $with:
                an_expired_key_is_refused_saying_so,
                a_rotated_key_works_until_its_grace_period_ends,
                last_use_is_recorded_and_listed,
            );
            api!(@in lists $backend $with:
                the_case_list_filters_pages_and_names_bad_parameters,
                the_pipeline_by_owner_and_as_of_a_past_time,
                customers_are_found_by_the_digits_of_their_phone,
                small_fixes_unassigned_partial_refunds_and_enum_values,
            );
            api!(@in leads $backend $with:
                leads_list_filters_pages_and_names_bad_parameters,
                the_lead_funnel_is_exact_by_source_and_campaign,
            );
            api!(@in campaigns $backend $with:
                campaign_results_and_attribution_are_exact,
            );
            api!(@in service $backend $with:
                business_hours_pauses_and_closed_cases_are_judged_as_they_stood,
            );
            api!(@in consent $backend $with:
                campaign_members_need_consent_and_contacts_without_it_are_flagged,
            );
            api!(@in service_quality $backend $with:
                complaints_and_satisfaction_are_exact_refused_outside_the_lists_and_erased,
            );
            api!(@in analytics $backend $with:
                analytics_answer_the_domain_decision_in_pages,
                profitability_and_cohorts_are_exact,
            );
            api!(@in customer_analytics $backend $with:
                the_360_analytics_agree_with_the_reports_now_and_in_the_past,
                customers_filter_by_churn_risk_and_refit_when_enough_changed,
                an_order_dated_after_now_counts_from_its_day_on,
            );
            api!(@in analytics_sales $backend $with:
                lifecycle_counts_stages_and_moves_exactly,
                the_funnel_of_a_period_is_exact,
            );
            api!(@in sales $backend $with:
                contacts_are_linked_moved_and_summed_on_the_account,
                tasks_filter_page_and_show_on_their_subjects,
            );
            api!(@in products $backend $with:
                order_lines_give_products_on_the_360_and_the_products_report,
            );
            api!(@in quotas $backend $with:
                the_pipeline_of_an_owner_shows_quota_attainment,
            );
            api!(@in proofs $backend $with:
                heads_and_proofs_verify_for_every_event_and_size,
                bad_proof_requests_name_the_parameter,
                two_processes_build_one_tree,
            );
            api!(@in workflows $backend $with:
                rules_act_through_the_ingest_decision_once_per_trigger,
                chains_stop_on_a_cycle_and_the_dry_run_shows_what_a_rule_would_do,
                schedules_fire_once_for_each_fact_come_due,
                rules_are_refused_naming_the_member_and_only_admins_change_them,
                a_rule_queues_one_webhook_call_per_trigger,
            );
            api!(@parking $backend $with:
                a_failure_stays_with_its_tenant,
                a_rebuild_brings_a_parked_tenant_back,
                a_failing_projection_is_reported_alike_by_every_process,
            );
        }
    };
    (@in $module:ident $backend:ident $with:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let start = |limits| App::$with(stringify!($name), limits);
                $module::$name(start).await;
            }
        )*
    };
    (@parking $backend:ident $with:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let start = |limits| App::$with(stringify!($name), limits);
                parking::$name(start).await;
            }
        )*
    };
    (@storable $backend:ident $with:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let start = |limits| App::$with(stringify!($name), limits);
                storable::$name(start).await;
            }
        )*
    };
    (@private $backend:ident $with:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let start = |limits| App::$with(stringify!($name), limits);
                privacy::$name(start).await;
            }
        )*
    };
    (@tests $backend:ident $with:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let start = |limits| App::$with(stringify!($name), limits);
                suite::$name(start).await;
            }
        )*
    };
}

api!(sqlite, sqlite_with);
api!(postgres, postgres_with);
