//! Every invalid event of a batch at once: [`Refusals`] lists the events a batch was refused
//! for (in batch order, at most [`MAX_LISTED`], with how many more there were), so a sender
//! fixes them all in one round. [`Collector`] gathers them while a batch is checked.
//!
//! What can be judged from an event alone (its members, the catalog, metadata, storable
//! text, ids unique within the batch) is collected for every event; a refusal that depends
//! on the state folded so far (rules, expected revisions, money totals, stored ids) stops
//! the check at the first, since the events after it would be judged against a state the
//! batch never reaches.

use crate::command::Refusal;

/// At most this many refusals are listed; the others are counted.
pub const MAX_LISTED: usize = 100;

/// The invalid events of one batch: at least one, in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    listed: Vec<Refusal>,
    invalid: usize,
    events: usize,
}

impl Refusals {
    /// One refusal in a batch of `events` events.
    pub fn one(refusal: Refusal, events: usize) -> Refusals {
        Refusals {
            listed: vec![refusal],
            invalid: 1,
            events: events.max(1),
        }
    }

    /// The first invalid event's refusal.
    pub fn first(&self) -> &Refusal {
        // Never empty: built by `one` or by a collector that saw a refusal.
        &self.listed[0]
    }

    /// The refusals listed (at most [`MAX_LISTED`]), in batch order.
    pub fn listed(&self) -> &[Refusal] {
        &self.listed
    }

    /// How many events of the batch are invalid, listed or not.
    pub fn invalid(&self) -> usize {
        self.invalid
    }

    /// How many invalid events are not listed (past [`MAX_LISTED`]).
    pub fn not_listed(&self) -> usize {
        self.invalid - self.listed.len()
    }

    /// How many events the batch holds.
    pub fn events(&self) -> usize {
        self.events
    }

    /// One sentence for the whole batch: the refusal itself when one event is invalid, else
    /// `3 of 5 events are invalid; the first: events[1].type: missing`.
    pub fn summary(&self) -> String {
        if self.invalid == 1 {
            return self.first().in_batch();
        }
        let listed = if self.not_listed() > 0 {
            format!(
                " ({} listed in errors, {} more not listed)",
                self.listed.len(),
                self.not_listed()
            )
        } else {
            String::new()
        };
        format!(
            "{} of {} events are invalid{listed}; the first: {}",
            self.invalid,
            self.events,
            self.first().in_batch()
        )
    }
}

impl std::fmt::Display for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Gathers the refusals of a batch being checked.
#[derive(Debug, Default)]
pub struct Collector {
    listed: Vec<Refusal>,
    invalid: usize,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Records one invalid event (listed while fewer than [`MAX_LISTED`] are).
    pub fn push(&mut self, refusal: Refusal) {
        self.invalid += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(refusal);
        }
    }

    /// The refusals of a batch of `events` events, or `None` when every event passed.
    pub fn finish(self, events: usize) -> Option<Refusals> {
        if self.listed.is_empty() {
            return None;
        }
        Some(Refusals {
            listed: self.listed,
            invalid: self.invalid,
            events: events.max(self.invalid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refusal_reads_as_before() {
        let refusals = Refusals::one(Refusal::at(2, "data.amount", "too big"), 5);
        assert_eq!(refusals.summary(), "events[2].data.amount: too big");
        assert_eq!(refusals.invalid(), 1);
        assert_eq!(refusals.not_listed(), 0);
    }

    #[test]
    fn many_are_summarised_and_counted_past_the_limit() {
        let mut collector = Collector::new();
        assert!(Collector::new().finish(3).is_none());
        for index in 0..MAX_LISTED + 7 {
            collector.push(Refusal::at(index, "type", "missing"));
        }
        let refusals = collector.finish(200).expect("refused");
        assert_eq!(refusals.listed().len(), MAX_LISTED);
        assert_eq!(refusals.invalid(), MAX_LISTED + 7);
        assert_eq!(refusals.not_listed(), 7);
        assert_eq!(refusals.first().index, 0);
        assert_eq!(
            refusals.summary(),
            "107 of 200 events are invalid (100 listed in errors, 7 more not listed); the \
             first: events[0].type: missing"
        );
    }
}
