//! A tiny given/when/then harness for aggregate rules, without I/O.

use crate::aggregates::RuleViolation;
use crate::catalog::DomainEvent;

/// The decide/evolve pair of one aggregate.
pub(crate) trait Decider {
    type State: Default;
    type Command;
    fn decide(
        state: &Self::State,
        command: Self::Command,
    ) -> Result<Vec<DomainEvent>, RuleViolation>;
    fn evolve(state: Self::State, event: &DomainEvent) -> Self::State;
    /// The fact the command would record, to check that emitters' facts obey the same rules.
    fn fact(command: &Self::Command) -> DomainEvent;
}

/// Declares the test decider of the aggregate module whose `State`, `Command`, `decide` and
/// `evolve` are in scope, and a `given` that starts its given/when/then.
macro_rules! decider {
    ($name:ident) => {
        struct $name;

        impl crate::aggregates::testing::Decider for $name {
            type State = State;
            type Command = Command;
            fn decide(
                state: &State,
                command: Command,
            ) -> Result<Vec<crate::catalog::DomainEvent>, crate::aggregates::RuleViolation> {
                decide(state, command)
            }
            fn evolve(state: State, event: &crate::catalog::DomainEvent) -> State {
                evolve(state, event)
            }
            fn fact(command: &Command) -> crate::catalog::DomainEvent {
                command.to_event()
            }
        }

        fn given(
            events: Vec<crate::catalog::DomainEvent>,
        ) -> crate::aggregates::testing::Given<$name> {
            crate::aggregates::testing::given(events)
        }
    };
}
pub(crate) use decider;

/// An entity id for tests.
pub(crate) fn id(text: &str) -> crate::ids::EntityId {
    crate::ids::EntityId::parse(text).unwrap()
}

/// The state after some past events.
pub(crate) struct Given<D: Decider> {
    state: D::State,
    history: Vec<DomainEvent>,
}

/// The outcome of deciding a command.
pub(crate) struct When {
    history: Vec<DomainEvent>,
    fact: DomainEvent,
    outcome: Result<Vec<DomainEvent>, RuleViolation>,
}

/// Folds `events` into a fresh state.
pub(crate) fn given<D: Decider>(events: Vec<DomainEvent>) -> Given<D> {
    let state = events.iter().fold(D::State::default(), D::evolve);
    Given {
        state,
        history: events,
    }
}

impl<D: Decider> Given<D> {
    pub(crate) fn when(self, command: D::Command) -> When {
        When {
            fact: D::fact(&command),
            outcome: D::decide(&self.state, command),
            history: self.history,
        }
    }
}

impl When {
    /// Asserts the command was accepted with exactly `expected`, and that the top-level
    /// `aggregates::check` accepts each of them as facts too.
    #[track_caller]
    pub(crate) fn then(self, expected: Vec<DomainEvent>) {
        match self.outcome {
            Ok(events) => {
                assert_eq!(events, expected);
                let mut history = self.history;
                for event in events {
                    assert_eq!(crate::aggregates::check(&history, &event), Ok(()));
                    history.push(event);
                }
            }
            Err(violation) => panic!("expected {expected:?}, was rejected: {violation}"),
        }
    }

    /// Asserts the command was rejected with a message containing `substring`, and that the
    /// same fact sent by an emitter is rejected by `aggregates::check` with the same message.
    #[track_caller]
    pub(crate) fn then_rejected(self, substring: &str) {
        match self.outcome {
            Ok(events) => panic!("expected a rejection with {substring:?}, got {events:?}"),
            Err(violation) => {
                let message = violation.to_string();
                assert!(
                    message.contains(substring),
                    "{message:?} lacks {substring:?}"
                );
                let checked = crate::aggregates::check(&self.history, &self.fact);
                assert_eq!(checked, Err(violation), "check disagrees with decide");
            }
        }
    }
}
