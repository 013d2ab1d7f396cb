//! The `console` workload (issue 22): the web console's pages on the real `crm-api` over a
//! store holding a whole CRM history ([`crate::crm_full`]). Signed in once (the session
//! cookie), each page is requested `rounds` times, round-robin over many customers and
//! interleaved with the other pages, and beside each request the plain JSON API call for the
//! same data with the same key, as the baseline. Every answer must be 200: a page that sends
//! the client to sign-in or fails is an error, not a fast answer.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;

use crate::api_bench::{Latencies, Server};
use crate::crm_data::Emitted;

/// One console page and its API twin, with `{id}` and `{date}` filled in per request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub name: &'static str,
    pub console: &'static str,
    pub api: &'static str,
}

/// The pages measured, in the order of `docs/console.md`.
pub const PAGES: [Page; 8] = [
    Page {
        name: "customers",
        console: "/console/customers",
        api: "/v1/customers",
    },
    Page {
        name: "customer",
        console: "/console/customers/{id}",
        api: "/v1/customers/{id}",
    },
    Page {
        name: "customer_as_of",
        console: "/console/customers/{id}?date={date}&time=business",
        api: "/v1/customers/{id}?as_of={date}T23:59:59Z",
    },
    Page {
        name: "timeline",
        console: "/console/customers/{id}/timeline",
        api: "/v1/customers/{id}/timeline",
    },
    Page {
        name: "pipeline",
        console: "/console/pipeline",
        api: "/v1/pipeline",
    },
    Page {
        name: "service",
        console: "/console/service",
        api: "/v1/service/backlog",
    },
    Page {
        name: "analytics",
        console: "/console/analytics?currency=USD",
        api: "/v1/analytics/rfm?currency=USD",
    },
    Page {
        name: "operations",
        console: "/console/operations",
        api: "/v1/projections",
    },
];

/// What one page measured.
#[derive(Debug)]
pub struct PageFigures {
    pub page: Page,
    pub console: Latencies,
    pub api: Latencies,
    /// The mean size of the page's HTML, in bytes.
    pub console_bytes: usize,
}

/// The customers of `tenant` worth a page (registered before the as-of day, never merged nor
/// erased), and that day: halfway through the history.
pub fn customers_and_date(events: &[Emitted], tenant: &str) -> (Vec<String>, NaiveDate) {
    let (first, last) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (first.occurred_at, last.occurred_at),
        _ => (chrono::Utc::now(), chrono::Utc::now()),
    };
    let middle = first + (last - first) / 2;
    let mut registered = Vec::new();
    let mut gone = std::collections::BTreeSet::new();
    for e in events.iter().filter(|e| e.tenant == tenant) {
        let id = e.data["customer_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match e.event_type {
            "CustomerRegistered" if e.occurred_at.date_naive() < middle.date_naive() => {
                registered.push(id)
            }
            "CustomerMerged" | "CustomerErased" => {
                gone.insert(id);
            }
            _ => {}
        }
    }
    registered.retain(|id| !gone.contains(id));
    (registered, middle.date_naive())
}

/// Signs in on `/console/sign-in` with the server's key (the form's hidden fields sent
/// back, if it has any) and returns the `crm_console` cookie's value.
pub async fn sign_in(server: &Server) -> Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = client
        .get(format!("{}/console/sign-in", server.address))
        .send()
        .await?
        .text()
        .await?;
    let mut fields = hidden_fields(&form);
    fields.push(("key".to_owned(), server.key.clone()));
    let body = fields
        .iter()
        .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let answer = client
        .post(format!("{}/console/sign-in", server.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    let status = answer.status();
    let cookie = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("crm_console="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    match (status.as_u16(), cookie) {
        (303, Some(cookie)) => Ok(cookie),
        (status, _) => bail!("sign-in answered {status} without a session cookie"),
    }
}

/// `name`/`value` of the hidden inputs of an HTML form (a CSRF token, if the page has one).
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(tag[start..end].replace("&amp;", "&"))
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
        .collect()
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Each page `rounds` times, pages interleaved, customers round-robin; one connection, so a
/// figure is one request's latency, not a queue's.
pub async fn console(
    server: &Server,
    cookie: &str,
    customers: &[String],
    date: NaiveDate,
    rounds: usize,
) -> Result<Vec<PageFigures>> {
    if customers.is_empty() {
        bail!("no customer to show");
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(2)
        .build()?;
    let mut console_ms = vec![Vec::with_capacity(rounds); PAGES.len()];
    let mut api_ms = vec![Vec::with_capacity(rounds); PAGES.len()];
    let mut bytes = vec![0usize; PAGES.len()];
    let started = Instant::now();
    for round in 0..rounds {
        let id = &customers[(round * 7919) % customers.len()];
        for (i, page) in PAGES.iter().enumerate() {
            let fill = |path: &str| {
                path.replace("{id}", id)
                    .replace("{date}", &date.format("%Y-%m-%d").to_string())
            };
            let path = fill(page.console);
            let sent = Instant::now();
            let answer = client
                .get(format!("{}{path}", server.address))
                .header("cookie", format!("crm_console={cookie}"))
                .send()
                .await?;
            let status = answer.status();
            let body = answer.bytes().await?;
            console_ms[i].push(sent.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!(
                    "GET {path}: {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
            bytes[i] += body.len();
            let path = fill(page.api);
            let sent = Instant::now();
            let answer = client
                .get(format!("{}{path}", server.address))
                .bearer_auth(&server.key)
                .send()
                .await?;
            let status = answer.status();
            let body = answer.bytes().await?;
            api_ms[i].push(sent.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!(
                    "GET {path}: {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut figures = Vec::new();
    for (i, page) in PAGES.iter().enumerate() {
        figures.push(PageFigures {
            page: *page,
            console: percentiles(std::mem::take(&mut console_ms[i]), seconds)
                .with_context(|| format!("no request of {}", page.name))?,
            api: percentiles(std::mem::take(&mut api_ms[i]), seconds)
                .with_context(|| format!("no request of {}", page.api))?,
            console_bytes: bytes[i] / rounds.max(1),
        });
    }
    Ok(figures)
}

/// p50, p99 and max of `all` (milliseconds); `seconds` is the whole run's.
fn percentiles(mut all: Vec<f64>, seconds: f64) -> Option<Latencies> {
    if all.is_empty() {
        return None;
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    Some(Latencies {
        requests: all.len(),
        seconds,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::{form_encode, hidden_fields};

    #[test]
    fn hidden_fields_and_form_encoding_are_read_and_written() {
        let html = r#"<form><input type="hidden" name="csrf" value="a&amp;b"><input id="key" name="key" type="password"></form>"#;
        assert_eq!(hidden_fields(html), [("csrf".to_owned(), "a&b".to_owned())]);
        assert_eq!(form_encode("crm_ab/c+d="), "crm_ab%2Fc%2Bd%3D");
    }
}
