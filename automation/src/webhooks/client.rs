//! The HTTP client deliveries go through: every address checked ([`super::resolver`] for
//! names, [`super::address`] for IP literals before sending), redirects not followed (a 3xx is
//! a failure), proxy variables ignored, connect and answer timeouts, and at most
//! [`ANSWER_LIMIT`] bytes of the answer read, then dropped. Success is a 2xx.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::redirect::Policy;

use super::address;
use super::resolver::GuardedResolver;

/// Bytes of an answer read before it is dropped.
pub const ANSWER_LIMIT: usize = 4 * 1024;
/// Longest an error text kept in the delivery log.
const ERROR_LEN: usize = 300;

/// The client's settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub allow_loopback: bool,
    pub connect_timeout: Duration,
    /// The whole exchange: connect, send, the answer's head and its first bytes.
    pub answer_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            allow_loopback: false,
            connect_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(15),
        }
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The answer's HTTP status, if one came.
    pub status: Option<u16>,
    /// Why it failed (`None` on a 2xx).
    pub error: Option<String>,
    pub latency_ms: u64,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// One message to send.
#[derive(Debug)]
pub struct Message<'a> {
    pub url: &'a str,
    pub id: &'a str,
    pub timestamp: i64,
    pub signature: &'a str,
    pub body: Vec<u8>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    options: ClientOptions,
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_loopback: options.allow_loopback,
            }))
            .redirect(Policy::none())
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .timeout(options.answer_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .user_agent("crm-webhooks/1")
            .build()?;
        Ok(Client { http, options })
    }

    /// Sends one message; never panics, every failure is an [`Outcome`] with its reason.
    pub async fn send(&self, message: Message<'_>) -> Outcome {
        let started = Instant::now();
        let elapsed =
            |started: Instant| u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Err(error) = self.check_literal(message.url) {
            return Outcome {
                status: None,
                error: Some(error),
                latency_ms: 0,
            };
        }
        let sent = self
            .http
            .post(message.url)
            .header("content-type", "application/json")
            .header("webhook-id", message.id)
            .header("webhook-timestamp", message.timestamp.to_string())
            .header("webhook-signature", message.signature)
            .body(message.body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Outcome {
                    status: None,
                    error: Some(describe(&error)),
                    latency_ms: elapsed(started),
                };
            }
        };
        let status = response.status();
        // Read a little of the answer (so a keep-alive connection can be reused), then drop it.
        let mut read = 0;
        while read < ANSWER_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        drop(response);
        let latency_ms = elapsed(started);
        let error = if status.is_success() {
            None
        } else if status.is_redirection() {
            Some(format!(
                "HTTP {}: redirects are not followed",
                status.as_u16()
            ))
        } else {
            Some(format!("HTTP {}", status.as_u16()))
        };
        Outcome {
            status: Some(status.as_u16()),
            error,
            latency_ms,
        }
    }

    /// Refuses a URL whose host is a refused IP literal (names are checked by the resolver).
    fn check_literal(&self, url: &str) -> Result<(), String> {
        let url = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let Ok(ip) = host.parse::<std::net::IpAddr>() else {
            return Ok(());
        };
        match address::refused(ip, self.options.allow_loopback) {
            None => Ok(()),
            Some(reason) => Err(format!(
                "refused address {ip}: {reason} (webhooks deliver to public addresses only)"
            )),
        }
    }
}

/// The error and its causes in one short line (the resolver's refusal among them).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut last = String::new();
    while let Some(cause) = source {
        let part = cause.to_string();
        if part != last && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        last = part;
        source = cause.source();
    }
    if text.len() > ERROR_LEN {
        let mut cut = ERROR_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
