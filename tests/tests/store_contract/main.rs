//! The event store contract: one suite, written once in `suite.rs`, run against every backend
//! on a fresh store per test. Test paths carry the backend (`sqlite::...`, `postgres::...`),
//! so the output shows which ran.

mod fixture;
mod postgres_append;
mod postgres_gaps;
mod postgres_pool;
mod suite;

use fixture::Fixture;

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            contract!(@tests $backend:
                appends_assign_revisions_from_zero_and_gap_free_positions,
                wrong_expected_revisions_are_typed_conflicts_that_store_nothing,
                re_appending_the_same_ids_is_acknowledged_as_duplicate_and_stores_nothing,
                event_ids_are_idempotency_keys_within_their_stream,
                a_failed_batch_leaves_nothing_of_itself_visible,
                streams_read_forwards_and_backwards_from_a_revision,
                the_log_reads_in_position_order_in_batches,
                envelopes_round_trip_exactly,
                subscriptions_catch_up_then_receive_live_events,
                subscriptions_reading_ahead_deliver_every_event_once,
                subscriptions_see_appends_from_another_store_handle,
                concurrent_writers_to_one_stream_have_exactly_one_winner_per_revision,
                tenants_never_see_each_others_events,
                an_intact_log_verifies,
                verify_names_an_event_whose_data_was_changed,
                verify_names_the_gap_where_an_event_was_removed,
                verify_names_a_gap_that_no_chain_shows,
                verify_notices_a_removed_last_event,
                verify_names_events_whose_order_was_swapped,
                verify_names_an_event_inserted_past_the_stream_head,
                the_event_table_refuses_updates_and_deletes,
                reopening_a_store_keeps_every_acknowledged_event,
                an_abandoned_append_neither_blocks_the_store_nor_half_writes,
                two_store_handles_appending_in_turn_keep_one_consistent_log,
                find_events_reports_stored_pairs_of_the_tenant_only,
                stream_heads_of_reports_existing_streams_of_the_tenant_only,
                a_batch_takes_positions_in_input_order_across_interleaved_streams,
                a_batch_failing_one_streams_expectation_writes_nothing_of_any_stream,
                an_expectation_of_a_stream_without_events_guards_the_call,
                replaying_a_batch_acknowledges_every_event_as_duplicate_and_stores_nothing,
                malformed_batches_are_refused_before_anything_is_written,
                batches_through_two_store_handles_in_turn_keep_one_consistent_log,
                an_abandoned_batch_neither_blocks_the_store_nor_half_writes,
                concurrent_single_appends_leave_no_gap_and_no_skipped_event,
                a_refused_append_fails_only_itself_among_concurrent_appends,
            );
        }
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

contract!(sqlite);
contract!(postgres);
