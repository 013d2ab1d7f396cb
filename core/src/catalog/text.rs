//! The one rule for text the CRM accepts: every string it stores must be storable and
//! projectable on every backend, so it is refused at validation (naming its field) rather
//! than found out later by a read model.
//!
//! PostgreSQL `text` cannot hold U+0000 (`invalid byte sequence for encoding "UTF8": 0x00`),
//! while SQLite can: a NUL accepted on SQLite would be an event that a PostgreSQL store (or
//! a later migration to one) cannot project. Every other Unicode scalar value (controls,
//! bidi marks, noncharacters, 4-byte characters) is stored and projected the same way on
//! both backends; the property test `hostile_text` in `tests/` holds the read models to it.

/// Why a text cannot be stored, if it cannot: today only a NUL character.
pub fn unstorable(text: &str) -> Option<String> {
    let at = text.chars().position(|c| c == '\0')?;
    Some(format!(
        "contains a NUL character (U+0000) at character {at}; it cannot be stored"
    ))
}

#[cfg(test)]
mod tests {
    use super::unstorable;

    #[test]
    fn only_nul_is_unstorable() {
        assert!(unstorable("evil\u{0}name").is_some_and(|r| r.contains("character 4")));
        for fine in [
            "",
            "plain",
            "\u{1}\u{7f}\u{202e}rtl",
            "😀𝄞",
            "\u{fffe}\u{ffff}",
            "\t\r\n",
        ] {
            assert_eq!(unstorable(fine), None, "{fine:?}");
        }
    }
}
