//! Projections end to end: the runner and every read model against real stores, one suite
//! written once in `suite.rs` and run on SQLite and PostgreSQL, each test on a fresh store.

mod fixture;
mod hostile;
mod sales;
mod suite;

use fixture::Fixture;

macro_rules! projections {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            projections!(@tests $backend:
                customer_360_figures_with_same_day_purchases_refunds_and_merges_are_right,
                the_timeline_spans_streams_converted_leads_and_merges,
                pipeline_and_backlog_figures_are_right,
                the_case_list_and_the_pipeline_by_owner_and_as_of_are_right,
                a_phone_search_matches_digits_once_the_tables_hold_them,
                a_rebuild_gives_the_same_rows_as_the_live_run_while_reads_keep_answering,
                killing_the_runner_at_random_points_ends_in_the_rows_of_a_clean_rebuild,
                as_of_folds_agree_with_the_read_model_at_the_same_moment,
                each_projection_runs_in_one_runner_and_another_takes_over_when_it_dies,
                a_changed_projection_version_is_rebuilt_while_the_old_tables_answer,
                an_old_generation_is_dropped_after_the_swap_and_after_a_crash_before_it,
                leads_rebuild_equals_live_and_the_funnel_as_of_agrees_with_a_fold_of_the_log,
                order_lines_give_products_and_version_1_orders_project_as_version_2,
                quota_attainment_is_right_now_and_as_of_past_times,
                campaigns_rebuild_equals_live_and_figures_follow_the_log,
                consent_contacts_are_judged_by_what_the_log_held_before_them,
                the_backlog_as_it_stood_is_judged_on_business_hours_pauses_and_every_case,
                legacy_sla_targets_move_into_the_log_once,
                complaints_and_satisfaction_fold_exactly_and_a_rebuild_equals_live,
                reads_asked_together_answer_as_each_alone,
                the_parked_set_is_read_again_when_the_parking_epoch_moves,
            );
            projections!(@sales $backend:
                contact_links_as_of_any_moment_agree_with_the_live_rows_then,
                tasks_fold_to_their_rows_and_list_in_both_orders,
                the_live_view_read_together_equals_each_read_alone,
            );
        }
    };
    (@sales $backend:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = Fixture::$backend(stringify!($name)).await else {
                    return;
                };
                sales::$name(&fixture).await;
            }
        )*
    };
    (@tests $backend:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = Fixture::$backend(stringify!($name)).await else {
                    return;
                };
                suite::$name(&fixture).await;
            }
        )*
    };
}

projections!(sqlite);
projections!(postgres);

/// The hostile-text property ([`hostile`]) on each backend, on one store per backend.
mod hostile_text {
    use super::*;

    fn run(fixture: impl std::future::Future<Output = Option<Fixture>>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let Some(fixture) = runtime.block_on(fixture) else {
            return;
        };
        hostile::every_accepted_event_is_projectable(&runtime, &fixture);
        runtime.block_on(async move { drop(fixture) });
    }

    #[test]
    fn sqlite_every_accepted_event_is_projectable() {
        run(Fixture::sqlite("hostile_text_sqlite"));
    }

    #[test]
    fn postgres_every_accepted_event_is_projectable() {
        run(Fixture::postgres("hostile_text_postgres"));
    }
}
