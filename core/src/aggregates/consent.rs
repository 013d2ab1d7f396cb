//! Consent as the rules read it: a customer's decision for a channel and purpose, under the
//! tenant's regime (`settings-consent`, see [`crate::catalog::settings`]).
//!
//! - `opt_in` (the default): marketing needs a consent granted and not withdrawn since.
//! - `opt_out`: marketing needs only that no consent was withdrawn (never given is allowed).
//!
//! Adding a customer to a campaign is a decision: refused (409, naming the consent) when the
//! customer's consent for the campaign's channel and `marketing` is missing
//! ([`check_member`]). An outbound marketing interaction is a fact that already happened: it
//! is recorded whatever the consent, and the read models flag it with the same [`status`]
//! read under the regime in force at its position.

use std::fmt;

use serde::Serialize;

use crate::aggregates::customer;
use crate::catalog::values::{ConsentChannel, ConsentPurpose, ConsentRegime};
use crate::ids::EntityId;

/// A customer's consent for one channel and purpose, as last decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Withdrawn,
    /// No decision was ever recorded.
    NeverGiven,
}

impl ConsentStatus {
    /// The status of `latest`, the last decision recorded (`None`: never).
    pub fn of(latest: Option<bool>) -> ConsentStatus {
        match latest {
            Some(true) => ConsentStatus::Granted,
            Some(false) => ConsentStatus::Withdrawn,
            None => ConsentStatus::NeverGiven,
        }
    }

    /// Whether marketing on the channel is allowed under `regime`.
    pub fn allows(self, regime: ConsentRegime) -> bool {
        match self {
            ConsentStatus::Granted => true,
            ConsentStatus::Withdrawn => false,
            ConsentStatus::NeverGiven => regime == ConsentRegime::OptOut,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Withdrawn => "withdrawn",
            ConsentStatus::NeverGiven => "never_given",
        }
    }
}

/// The consent of the customer folded into `state` for `channel` and `purpose`.
pub fn status(
    state: &customer::State,
    channel: ConsentChannel,
    purpose: ConsentPurpose,
) -> ConsentStatus {
    ConsentStatus::of(state.consents.get(&(channel, purpose)).copied())
}

/// The consent a refused campaign member lacks: what the 409 names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MissingConsent {
    pub customer_id: String,
    pub channel: ConsentChannel,
    pub purpose: ConsentPurpose,
    /// `withdrawn` or `never_given`.
    pub status: ConsentStatus,
    /// The tenant's regime the status was read under.
    pub regime: ConsentRegime,
}

impl fmt::Display for MissingConsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (channel, purpose) = (self.channel, self.purpose);
        match self.status {
            ConsentStatus::Withdrawn => write!(
                f,
                "customer {} withdrew consent for {channel} {purpose}",
                self.customer_id
            ),
            _ => write!(
                f,
                "customer {} never gave consent for {channel} {purpose}, which the tenant's \
                 consent regime ({}) requires",
                self.customer_id, self.regime
            ),
        }
    }
}

/// Why a customer cannot be a member of a campaign reaching it on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRefused {
    /// Its consent is missing.
    Consent(MissingConsent),
    /// It is not a customer to contact (merged away, erased): the reason.
    Customer(String),
}

/// Whether the customer folded into `state` may be added to a campaign that reaches its
/// members on `channel`, under `regime`.
pub fn check_member(
    state: &customer::State,
    customer_id: &EntityId,
    channel: ConsentChannel,
    regime: ConsentRegime,
) -> Result<(), MemberRefused> {
    if let Some(into) = &state.merged_into {
        return Err(MemberRefused::Customer(format!(
            "customer {customer_id} was merged into customer {into}: add {into}"
        )));
    }
    if state.erased {
        return Err(MemberRefused::Customer(format!(
            "customer {customer_id} was erased"
        )));
    }
    let purpose = ConsentPurpose::Marketing;
    let status = status(state, channel, purpose);
    if status.allows(regime) {
        return Ok(());
    }
    Err(MemberRefused::Consent(MissingConsent {
        customer_id: customer_id.as_str().to_owned(),
        channel,
        purpose,
        status,
        regime,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(consent: Option<bool>) -> customer::State {
        let mut state = customer::State {
            registered: true,
            ..customer::State::default()
        };
        if let Some(granted) = consent {
            state
                .consents
                .insert((ConsentChannel::Email, ConsentPurpose::Marketing), granted);
        }
        // A consent for another channel or purpose never counts.
        state
            .consents
            .insert((ConsentChannel::Sms, ConsentPurpose::Marketing), true);
        state
            .consents
            .insert((ConsentChannel::Email, ConsentPurpose::Service), true);
        state
    }

    fn judge(consent: Option<bool>, regime: ConsentRegime) -> Result<(), MemberRefused> {
        let id = EntityId::parse("c-1").unwrap();
        check_member(&customer(consent), &id, ConsentChannel::Email, regime)
    }

    #[test]
    fn members_need_marketing_consent_on_the_campaigns_channel_under_each_regime() {
        use ConsentRegime::{OptIn, OptOut};
        assert_eq!(judge(Some(true), OptIn), Ok(()));
        assert_eq!(judge(Some(true), OptOut), Ok(()));
        assert_eq!(judge(None, OptOut), Ok(()));
        for (consent, regime, status) in [
            (None, OptIn, ConsentStatus::NeverGiven),
            (Some(false), OptIn, ConsentStatus::Withdrawn),
            (Some(false), OptOut, ConsentStatus::Withdrawn),
        ] {
            let Err(MemberRefused::Consent(missing)) = judge(consent, regime) else {
                panic!("{consent:?} under {regime} was not refused for consent");
            };
            assert_eq!(missing.status, status);
            assert_eq!(missing.channel, ConsentChannel::Email);
            assert_eq!(missing.purpose, ConsentPurpose::Marketing);
            assert_eq!(missing.regime, regime);
            assert!(missing.to_string().contains("email marketing"), "{missing}");
        }
    }

    #[test]
    fn merged_and_erased_customers_are_refused_whatever_their_consent() {
        let id = EntityId::parse("c-1").unwrap();
        let mut merged = customer(Some(true));
        merged.merged_into = Some(EntityId::parse("c-2").unwrap());
        let refused = check_member(&merged, &id, ConsentChannel::Email, ConsentRegime::OptOut);
        assert!(
            matches!(&refused, Err(MemberRefused::Customer(r)) if r.contains("add c-2")),
            "{refused:?}"
        );
        let mut erased = customer(Some(true));
        erased.erased = true;
        let refused = check_member(&erased, &id, ConsentChannel::Email, ConsentRegime::OptOut);
        assert!(matches!(refused, Err(MemberRefused::Customer(_))));
    }
}
