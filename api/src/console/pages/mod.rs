//! The console's pages, one module per navigation entry; each handler reads through
//! [`super::Console::get`] and renders with [`super::layout`].

pub mod analytics;
pub mod customers;
pub mod figures;
pub mod operations;
pub mod pipeline;
pub mod service;
pub mod timeline;

/// `path?query` with the pairs whose value is present and not empty, form-encoded.
pub fn with_query(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let present: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    if present.is_empty() {
        return path.to_owned();
    }
    match serde_urlencoded::to_string(&present) {
        Ok(query) => format!("{path}?{query}"),
        Err(_) => path.to_owned(),
    }
}

/// An entity id from a console path, checked as the API checks it (so it can be put in an
/// API path as it is): 400 naming it otherwise.
pub fn entity_id(raw: &str) -> Result<crm_core::ids::EntityId, super::Failure> {
    crm_core::ids::EntityId::parse(raw)
        .map_err(|e| super::Failure::bad_request(format!("the id {raw:?} is invalid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_only_present_values_and_encode_them() {
        assert_eq!(
            with_query("/v1/x", &[("a", None), ("b", Some(""))]),
            "/v1/x"
        );
        assert_eq!(
            with_query("/v1/x", &[("search", Some("a b&c")), ("limit", Some("50"))]),
            "/v1/x?search=a+b%26c&limit=50"
        );
        assert!(entity_id("c-1").is_ok());
        assert!(entity_id("../v1/keys").is_err());
        assert!(entity_id("a?b").is_err());
    }
}
