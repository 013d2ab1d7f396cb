//! The closed sets of values event data uses (kinds, channels, stages, priorities, ...), each
//! written in JSON exactly as its `as_str` says.

use crate::catalog::fields::closed_set;

closed_set! {
    /// Whether a customer is a person or a company.
    CustomerKind { Person = "person", Company = "company" }
}

closed_set! {
    /// Channels a consent is given or withdrawn for.
    ConsentChannel {
        Email = "email",
        Phone = "phone",
        Sms = "sms",
        Post = "post",
        Chat = "chat",
        Social = "social",
    }
}

closed_set! {
    /// What a consent allows the data to be used for.
    ConsentPurpose {
        Marketing = "marketing",
        Service = "service",
        Profiling = "profiling",
        Analytics = "analytics",
        ThirdPartySharing = "third_party_sharing",
    }
}

impl ConsentChannel {
    /// The consent an interaction on `channel` needs: `None` for channels where the customer
    /// came to us or met us (web, meeting, in person), which no consent governs.
    pub fn of_interaction(channel: InteractionChannel) -> Option<ConsentChannel> {
        match channel {
            InteractionChannel::Email => Some(ConsentChannel::Email),
            InteractionChannel::Phone => Some(ConsentChannel::Phone),
            InteractionChannel::Chat => Some(ConsentChannel::Chat),
            InteractionChannel::Sms => Some(ConsentChannel::Sms),
            InteractionChannel::Social => Some(ConsentChannel::Social),
            InteractionChannel::Web
            | InteractionChannel::Meeting
            | InteractionChannel::InPerson => None,
        }
    }
}

closed_set! {
    /// How a tenant reads a consent never given: under `opt_in` (the default) marketing
    /// needs a consent granted; under `opt_out` it needs only that none was withdrawn.
    ConsentRegime { OptIn = "opt_in", OptOut = "opt_out" }
}

closed_set! {
    /// Channels of interactions and cases.
    InteractionChannel {
        Email = "email",
        Phone = "phone",
        Chat = "chat",
        Sms = "sms",
        Social = "social",
        Web = "web",
        Meeting = "meeting",
        InPerson = "in_person",
    }
}

closed_set! {
    /// Whether the customer or we started an interaction.
    Direction { Inbound = "inbound", Outbound = "outbound" }
}

closed_set! {
    /// Sales stages of an opportunity. The two closed stages are reached only by
    /// `OpportunityWon` and `OpportunityLost`.
    Stage {
        Prospecting = "Prospecting",
        Qualification = "Qualification",
        Proposal = "Proposal",
        Negotiation = "Negotiation",
        ClosedWon = "Closed Won",
        ClosedLost = "Closed Lost",
    }
}

impl Stage {
    /// Win probability in percent assumed when the event gives none.
    pub fn default_probability(self) -> u8 {
        match self {
            Stage::Prospecting => 10,
            Stage::Qualification => 20,
            Stage::Proposal => 50,
            Stage::Negotiation => 80,
            Stage::ClosedWon => 100,
            Stage::ClosedLost => 0,
        }
    }

    /// Forecast category assumed when the event gives none.
    pub fn default_forecast_category(self) -> ForecastCategory {
        match self {
            Stage::Prospecting | Stage::Qualification => ForecastCategory::Pipeline,
            Stage::Proposal => ForecastCategory::BestCase,
            Stage::Negotiation => ForecastCategory::Commit,
            Stage::ClosedWon => ForecastCategory::Closed,
            Stage::ClosedLost => ForecastCategory::Omitted,
        }
    }

    /// True for "Closed Won" and "Closed Lost".
    pub fn is_closed(self) -> bool {
        matches!(self, Stage::ClosedWon | Stage::ClosedLost)
    }
}

closed_set! {
    /// Forecast categories of an opportunity.
    ForecastCategory {
        Pipeline = "Pipeline",
        BestCase = "Best Case",
        Commit = "Commit",
        Closed = "Closed",
        Omitted = "Omitted",
    }
}

closed_set! {
    /// Case priorities, lowest first (the order is used: escalation never lowers it).
    Priority {
        Low = "low",
        Normal = "normal",
        High = "high",
        Urgent = "urgent",
    }
}

closed_set! {
    /// How a campaign member responded.
    CampaignResponse {
        Opened = "opened",
        Clicked = "clicked",
        Replied = "replied",
        Registered = "registered",
        Attended = "attended",
        Converted = "converted",
        Unsubscribed = "unsubscribed",
        Bounced = "bounced",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_have_the_documented_default_probabilities_and_categories() {
        let expected = [
            ("Prospecting", 10, "Pipeline"),
            ("Qualification", 20, "Pipeline"),
            ("Proposal", 50, "Best Case"),
            ("Negotiation", 80, "Commit"),
            ("Closed Won", 100, "Closed"),
            ("Closed Lost", 0, "Omitted"),
        ];
        assert_eq!(Stage::ALL.len(), expected.len());
        for (name, probability, category) in expected {
            let stage = Stage::parse(name).unwrap();
            assert_eq!(stage.as_str(), name);
            assert_eq!(stage.default_probability(), probability, "{name}");
            assert_eq!(
                stage.default_forecast_category().as_str(),
                category,
                "{name}"
            );
        }
    }

    #[test]
    fn closed_sets_read_and_write_their_exact_strings() {
        for priority in Priority::ALL {
            let json = serde_json::to_value(priority).unwrap();
            assert_eq!(serde_json::from_value::<Priority>(json).unwrap(), *priority);
        }
        assert!(Priority::Low < Priority::Urgent);
        let err = serde_json::from_value::<InteractionChannel>(serde_json::json!("fax"));
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains("unknown value `fax`") && err.contains("in_person"),
            "{err}"
        );
        assert_eq!(
            ForecastCategory::parse("Best Case"),
            Some(ForecastCategory::BestCase)
        );
        assert_eq!(ForecastCategory::parse("best case"), None);
    }
}

closed_set! {
    /// What a task is about.
    TaskSubjectKind {
        Customer = "customer",
        Opportunity = "opportunity",
        Case = "case",
        Lead = "lead",
    }
}
