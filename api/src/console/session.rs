//! Console sessions: an API key presented once at sign-in is exchanged for a random session
//! token carried by an HttpOnly, SameSite=Strict cookie. Only the token's SHA-256 is stored
//! (table `crm_console_sessions`, beside the keys), with the key's id, a CSRF token and an
//! expiry; the key itself is never stored or kept. Every request acts as the key as it
//! stands then ([`crate::keys::KeyStore::principal_of`]): a session ends with its key's
//! revocation or expiry, within the key cache's time, and at its own expiry or sign-out.

use std::time::Duration;

use chrono::Utc;
use crm_projections::db::{Col, SqlValue};
use crm_projections::{ProjectionError, ReadDb};
use sha2::{Digest, Sha256};

use crate::keys::Principal;

/// The cookie's name.
pub const COOKIE: &str = "crm_console";

/// How long a session lasts from sign-in, at most (its key's revocation or expiry ends it
/// sooner).
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// A signed-in session: whom it acts as, and the token its forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// Sent back by every form that changes something (sign-out), compared with this.
    pub csrf: String,
}

/// Creates the session table if it does not exist.
pub async fn create_table(db: &ReadDb) -> Result<(), ProjectionError> {
    db.execute(
        "CREATE TABLE IF NOT EXISTS crm_console_sessions (\
         token_sha256 TEXT PRIMARY KEY, key_id TEXT NOT NULL, csrf TEXT NOT NULL, \
         created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)",
        vec![],
    )
    .await?;
    db.execute(
        "CREATE INDEX IF NOT EXISTS crm_console_sessions_expiry \
         ON crm_console_sessions (expires_at)",
        vec![],
    )
    .await?;
    Ok(())
}

/// A new session for `key_id`: returns the cookie's token (shown to the browser only).
/// Sessions past their expiry are removed on the way.
pub async fn open(db: &ReadDb, key_id: &str) -> Result<String, SessionError> {
    let token = random_hex()?;
    let csrf = random_hex()?;
    let now = Utc::now().timestamp_micros();
    let expires = now + i64::try_from(LIFETIME.as_micros()).unwrap_or(i64::MAX);
    db.execute(
        "DELETE FROM crm_console_sessions WHERE expires_at <= ?",
        vec![SqlValue::Int(now)],
    )
    .await?;
    db.execute(
        "INSERT INTO crm_console_sessions (token_sha256, key_id, csrf, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
        vec![
            digest(&token).into(),
            key_id.into(),
            csrf.into(),
            SqlValue::Int(now),
            SqlValue::Int(expires),
        ],
    )
    .await?;
    Ok(token)
}

/// The session's key id and CSRF token, while the session has not expired.
pub async fn find(db: &ReadDb, token: &str) -> Result<Option<(String, String)>, SessionError> {
    if !well_formed(token) {
        return Ok(None);
    }
    let rows = db
        .fetch(
            "SELECT key_id, csrf FROM crm_console_sessions \
             WHERE token_sha256 = ? AND expires_at > ?",
            vec![
                digest(token).into(),
                SqlValue::Int(Utc::now().timestamp_micros()),
            ],
            &[Col::Text, Col::Text],
        )
        .await?;
    Ok(rows.into_iter().next().and_then(|row| {
        let mut row = row.into_iter();
        Some((row.next()?.into_text()?, row.next()?.into_text()?))
    }))
}

/// Ends the session (sign-out).
pub async fn close(db: &ReadDb, token: &str) -> Result<(), SessionError> {
    if well_formed(token) {
        db.execute(
            "DELETE FROM crm_console_sessions WHERE token_sha256 = ?",
            vec![digest(token).into()],
        )
        .await?;
    }
    Ok(())
}

/// The `Set-Cookie` value that carries `token`; `secure` behind TLS.
pub fn cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub fn removal(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session token in a `Cookie` header, if any.
pub fn token_in(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Whether two CSRF tokens are equal, in constant time.
pub fn csrf_matches(expected: &str, presented: &str) -> bool {
    let (a, b) = (Sha256::digest(expected), Sha256::digest(presented));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// What can go wrong with sessions.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session table: {0}")]
    Db(#[from] ProjectionError),
    #[error("no randomness for a session token: {0}")]
    Random(String),
}

/// 32 random bytes, as hex.
fn random_hex() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// A token as [`open`] makes them: 64 lowercase hex digits (anything else is not looked up).
fn well_formed(token: &str) -> bool {
    token.len() == 64
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn the_token_is_read_from_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; crm_console=abc; b=2"),
        );
        assert_eq!(token_in(&headers).as_deref(), Some("abc"));
        let mut other = HeaderMap::new();
        other.append(header::COOKIE, HeaderValue::from_static("crm_consolex=abc"));
        assert_eq!(token_in(&other), None);
    }

    #[test]
    fn only_tokens_of_the_made_form_are_looked_up() {
        assert!(well_formed(&"ab".repeat(32)));
        assert!(!well_formed(&"AB".repeat(32)));
        assert!(!well_formed("ab"));
        assert!(!well_formed(&"zz".repeat(32)));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_tls() {
        let plain = cookie("t", false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(cookie("t", true).ends_with("; Secure"));
        assert!(removal(false).contains("Max-Age=0"));
    }

    #[test]
    fn csrf_tokens_compare_by_value() {
        assert!(csrf_matches("abc", "abc"));
        assert!(!csrf_matches("abc", "abd"));
        assert!(!csrf_matches("abc", ""));
    }
}
