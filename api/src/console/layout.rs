//! The console's page shell (skip link, header with the navigation and the signed-in key,
//! one `<main>` with one `<h1>`, sign-out) and the failure page, and the helpers pages use
//! to show API values (money, times, any JSON value) as text.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::call::Console;
use crate::keys::Role;

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Customers,
    Pipeline,
    Service,
    Analytics,
    Operations,
    None,
}

const ENTRIES: [(Nav, &str, &str); 5] = [
    (Nav::Customers, "/console/customers", "Customers"),
    (Nav::Pipeline, "/console/pipeline", "Pipeline"),
    (Nav::Service, "/console/service", "Service"),
    (Nav::Analytics, "/console/analytics", "Analytics"),
    (Nav::Operations, "/console/operations", "Operations"),
];

/// A signed-in page: `title` is its `<h1>` and, with the product's name, its `<title>`.
pub fn page(console: &Console, nav: Nav, title: &str, body: Markup) -> Markup {
    let principal = console.principal();
    shell(
        title,
        html! {
            header.top {
                a.brand href="/console/customers" { "CRM console" }
                nav aria-label="Console" {
                    ul {
                        @for (entry, href, label) in ENTRIES {
                            @if entry != Nav::Operations || principal.role == Role::Admin {
                                li {
                                    @if entry == nav {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
                div.who {
                    span { "Tenant " strong { (principal.tenant.as_str()) } " · role " strong { (principal.role.as_str()) }
                        @if !principal.reads_personal_data() { " · personal data masked" } }
                    form method="post" action="/console/sign-out" {
                        input type="hidden" name="csrf" value=(console.session.csrf);
                        button #sign-out type="submit" { "Sign out" }
                    }
                }
            }
            main #main tabindex="-1" {
                h1 { (title) }
                (body)
            }
        },
    )
}

/// A page without a session (sign-in, failures).
pub fn bare(title: &str, body: Markup) -> Markup {
    shell(
        title,
        html! {
            header.top { a.brand href="/console/customers" { "CRM console" } }
            main #main tabindex="-1" {
                h1 { (title) }
                (body)
            }
        },
    )
}

fn shell(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · CRM console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (content)
            }
        }
    }
}

/// The page of a refusal or failure.
pub fn failure(status: StatusCode, detail: &str) -> Markup {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        StatusCode::SERVICE_UNAVAILABLE => "Not available yet",
        s if s.is_client_error() => "That request could not be answered",
        _ => "Something went wrong",
    };
    bare(
        title,
        html! {
            p #error role="alert" { (detail) }
            p { "Status " (status.as_u16()) ". " a href="/console/customers" { "Back to customers" } }
        },
    )
}

/// A JSON value as text: money as `12.50 EUR`, times as `2026-03-01 12:00 UTC`, `null` as
/// an em dash, arrays joined, objects as `key: value` pairs.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            // Model figures (probabilities, expected values) to a reader's precision; the
            // `data-value` of a figure keeps the exact number.
            (_, _, Some(f)) if f.abs() < 10.0 => format!("{f:.3}"),
            (_, _, Some(f)) => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Value::String(s) => time(s).unwrap_or_else(|| s.clone()),
        Value::Array(items) if items.is_empty() => "—".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(map) => match (map.get("amount"), map.get("currency")) {
            (Some(Value::String(amount)), Some(Value::String(currency))) if map.len() == 2 => {
                format!("{amount} {currency}")
            }
            _ => map
                .iter()
                .map(|(k, v)| format!("{k}: {}", text(v)))
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}

/// An RFC 3339 time, shown to the minute in UTC.
fn time(s: &str) -> Option<String> {
    if s.len() < 20 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| {
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string()
    })
}

/// The raw text of a JSON value (strings unquoted), as `data-value` attributes carry it.
pub fn raw(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A humane label for a snake_case member name.
pub fn label(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A table of `items` (objects) with the given columns (header, member), each cell [`text`].
pub fn table(id: &str, caption: &str, items: &[Value], columns: &[(&str, &str)]) -> Markup {
    html! {
        @if items.is_empty() {
            p #(id) .empty { (caption) ": none." }
        } @else {
            // A table wider than a phone scrolls: keyboard users reach it as a named region.
            div.scroll tabindex="0" role="region" aria-label=(caption) {
                table #(id) {
                    caption { (caption) }
                    thead { tr { @for (header, _) in columns { th scope="col" { (header) } } } }
                    tbody {
                        @for item in items {
                            tr { @for (_, member) in columns { td { (text(&item[*member])) } } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_as_text() {
        assert_eq!(
            text(&json!({"amount": "12.50", "currency": "EUR"})),
            "12.50 EUR"
        );
        assert_eq!(text(&json!("2026-03-01T12:00:00Z")), "2026-03-01 12:00 UTC");
        assert_eq!(text(&json!("c-1")), "c-1");
        assert_eq!(text(&json!(null)), "—");
        assert_eq!(text(&json!([1, 2])), "1, 2");
        assert_eq!(text(&json!(true)), "yes");
        assert_eq!(text(&json!(0.7241999660109304)), "0.724");
        assert_eq!(text(&json!(360.80495031404087)), "360.80");
        assert_eq!(text(&json!(12)), "12");
        assert_eq!(raw(&json!("x")), "x");
        assert_eq!(raw(&json!(3)), "3");
        assert_eq!(label("open_cases"), "Open cases");
    }

    #[test]
    fn values_are_escaped_in_tables() {
        let html = table(
            "t",
            "T",
            &[json!({"name": "<script>alert(1)</script>"})],
            &[("Name", "name")],
        )
        .into_string();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
