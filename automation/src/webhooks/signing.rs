//! Standard Webhooks signing (<https://www.standardwebhooks.com>): the secret (32 random
//! bytes, shown as `whsec_<base64>`), the message id (`webhook-id`, deterministic so a resent
//! message carries the id of its first delivery) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::WebhookError;

/// The prefix of a secret as shown to its owner.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret.
pub const SECRET_LEN: usize = 32;

/// The namespace of message ids (a fixed UUID, so ids are the same in every process).
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_0a8e_7b0d_4d5e_9a62_3f1c_8e21_d0a7);

/// A signing secret's key bytes (zeroed when dropped).
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([hidden])")
    }
}

impl Secret {
    /// 32 random bytes from the operating system.
    pub fn generate() -> Result<Secret, WebhookError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        getrandom::fill(bytes.as_mut_slice())
            .map_err(|e| WebhookError::Sealing(format!("no randomness: {e}")))?;
        Ok(Secret(bytes))
    }

    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Secret {
        Secret(bytes)
    }

    /// Parses `whsec_<base64>` (or the bare base64).
    pub fn parse(text: &str) -> Option<Secret> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        STANDARD
            .decode(encoded)
            .ok()
            .filter(|b| !b.is_empty())
            .map(|b| Secret(Zeroizing::new(b)))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64 of the key bytes>`, what the owner configures its verifier with.
    pub fn shown(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(self.0.as_slice())
        ))
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-id` of the event at `position` for subscription `webhook_id`: the same on
/// every attempt, resend and replay.
pub fn event_message_id(webhook_id: &str, position: u64) -> String {
    message_id(&format!("event:{webhook_id}:{position}"))
}

/// The `webhook-id` of a rule call, from its call id.
pub fn call_message_id(webhook_id: &str, call_id: &str) -> String {
    message_id(&format!("call:{webhook_id}:{call_id}"))
}

fn message_id(name: &str) -> String {
    format!(
        "msg_{}",
        Uuid::new_v5(&MESSAGE_NAMESPACE, name.as_bytes()).simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks specification's libraries.
    #[test]
    fn signatures_match_the_standard_webhooks_reference_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            secret.shown().as_str(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );
        // Any change to the id, time or body changes it.
        assert_ne!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_331,
                br#"{"test": 2432232314}"#
            ),
            signature
        );
        assert_ne!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJel",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            signature
        );
    }

    #[test]
    fn generated_secrets_are_32_random_bytes() {
        let a = Secret::generate().expect("a");
        let b = Secret::generate().expect("b");
        assert_eq!(a.bytes().len(), 32);
        assert_ne!(a.bytes(), b.bytes());
        let shown = a.shown();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(Secret::parse(&shown).expect("parse").bytes(), a.bytes());
        assert_eq!(format!("{a:?}"), "Secret([hidden])");
    }

    #[test]
    fn message_ids_are_deterministic_per_subscription_and_position() {
        let first = event_message_id("wh_1", 42);
        assert_eq!(first, event_message_id("wh_1", 42));
        assert_ne!(first, event_message_id("wh_1", 43));
        assert_ne!(first, event_message_id("wh_2", 42));
        assert!(first.starts_with("msg_") && first.len() == 36);
        assert_ne!(
            call_message_id("wh_1", "c-1"),
            call_message_id("wh_1", "c-2")
        );
    }
}
