//! Entity ids: the emitters' own identifiers, validated once at the edge so every later layer
//! can put them in stream names, URLs and logs without escaping.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted id, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// An emitter-chosen id: 1 to 128 ASCII letters, digits, `.`, `_`, `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityId(String);

/// Why a string is not a valid [`EntityId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id was empty: ask the sender for the id it uses for this entity.
    #[error("id must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_CHARS`]: the sender must use a shorter id (a hash, say).
    #[error("id is {chars} characters long, at most {MAX_ID_CHARS} are allowed")]
    TooLong { chars: usize },
    /// The id contains a character outside the allowed set: the sender must map its ids.
    #[error(
        "id `{id}` contains {character:?} at position {position}; only ASCII letters, digits, '.', '_', ':' and '-' are allowed"
    )]
    InvalidCharacter {
        id: String,
        character: char,
        position: usize,
    },
}

impl EntityId {
    /// Validates `text` as an id.
    pub fn parse(text: &str) -> Result<EntityId, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        // Count before echoing anything back, so a huge input never ends up in a message.
        let chars = text.chars().count();
        if chars > MAX_ID_CHARS {
            return Err(IdError::TooLong { chars });
        }
        if let Some((position, character)) = text.chars().enumerate().find(|(_, c)| !is_id_char(*c))
        {
            return Err(IdError::InvalidCharacter {
                id: text.to_owned(),
                character,
                position,
            });
        }
        Ok(EntityId(text.to_owned()))
    }

    /// An id this crate spells itself (a fixed word known to be valid).
    pub(crate) fn from_trusted(text: &str) -> EntityId {
        debug_assert!(EntityId::parse(text).is_ok(), "{text}");
        EntityId(text.to_owned())
    }

    /// The id as it was sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True for the characters ids may hold (tenant ids and stream ids share the rule).
pub(crate) fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The OpenAPI form: an id string.
impl utoipa::PartialSchema for EntityId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "An entity id: 1 to 128 letters, digits, '.', '_', ':' or '-'",
            ))
            .into()
    }
}

impl utoipa::ToSchema for EntityId {}

impl Serialize for EntityId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        EntityId::parse(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_and_the_four_separators() {
        let id = EntityId::parse("c-42.a_b:Z").unwrap();
        assert_eq!(id.as_str(), "c-42.a_b:Z");
        assert_eq!(id.to_string(), "c-42.a_b:Z");
    }

    #[test]
    fn accepts_exactly_128_characters_and_rejects_129() {
        assert!(EntityId::parse(&"a".repeat(128)).is_ok());
        let err = EntityId::parse(&"a".repeat(129)).unwrap_err();
        assert_eq!(err, IdError::TooLong { chars: 129 });
        assert_eq!(
            err.to_string(),
            "id is 129 characters long, at most 128 are allowed"
        );
    }

    #[test]
    fn rejects_an_empty_id() {
        assert_eq!(EntityId::parse(""), Err(IdError::Empty));
    }

    #[test]
    fn rejects_spaces_slashes_and_non_ascii_naming_the_character() {
        for (text, bad) in [("a b", ' '), ("a/b", '/'), ("café", 'é'), ("a\nb", '\n')] {
            let err = EntityId::parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn serializes_as_a_plain_string_and_validates_when_deserializing() {
        let id = EntityId::parse("u-7").unwrap();
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!("u-7"));
        let back: EntityId = serde_json::from_value(serde_json::json!("u-7")).unwrap();
        assert_eq!(back, id);
        let err = serde_json::from_value::<EntityId>(serde_json::json!("u 7")).unwrap_err();
        assert!(err.to_string().contains("' '"), "{err}");
        assert!(serde_json::from_value::<EntityId>(serde_json::json!(7)).is_err());
    }
}
