//! Prometheus metrics at `GET /metrics`: requests and their latencies by route template (never
//! the concrete path, which holds customer ids; labels come only from the standard methods and
//! the route templates, so no request adds a label of its own), appended and duplicate events, and each
//! projection's position and lag. Counters live in memory and start at zero with the process.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::SharedState;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (method, route) → latency histogram.
    latencies: Mutex<BTreeMap<(String, String), Histogram>>,
    pub events_appended: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub append_batches: AtomicU64,
    /// Batches refused for a conflict with the stream's state (409).
    pub append_conflicts: AtomicU64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut latencies) = self.latencies.lock() {
            let histogram = latencies
                .entry((method.to_owned(), route.to_owned()))
                .or_default();
            for (bucket, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
    }
}

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The method label: one of the standard methods, else `other` (a client may send any token
/// as a method; each distinct one would be a label, and hyper accepts 50 KB methods).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts every request by route template and status, and times it.
pub async fn track(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // A matched path is one of the router's templates: a fixed, small set.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    state.metrics.observe(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`, in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "operations",
    summary = "Prometheus metrics: requests, latencies, appends, projection lag",
    responses((status = 200, description = "The Prometheus text exposition format.", body = String, content_type = "text/plain"))
)]
pub async fn render(State(state): State<SharedState>) -> Response {
    let metrics = &state.metrics;
    let mut out = String::new();
    out.push_str("# HELP crm_http_requests_total HTTP requests answered.\n");
    out.push_str("# TYPE crm_http_requests_total counter\n");
    if let Ok(requests) = metrics.requests.lock() {
        for ((method, route, status), count) in requests.iter() {
            let _ = writeln!(
                out,
                "crm_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(route)
            );
        }
    }
    out.push_str("# HELP crm_http_request_duration_seconds Time to answer HTTP requests.\n");
    out.push_str("# TYPE crm_http_request_duration_seconds histogram\n");
    if let Ok(latencies) = metrics.latencies.lock() {
        for ((method, route), histogram) in latencies.iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
                let _ = writeln!(
                    out,
                    "crm_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "crm_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "crm_http_request_duration_seconds_sum{{{labels}}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "crm_http_request_duration_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
    }
    for (name, help, counter) in [
        (
            "crm_events_appended_total",
            "Events written by POST /v1/events.",
            &metrics.events_appended,
        ),
        (
            "crm_events_duplicate_total",
            "Events acknowledged as duplicates of stored ones (nothing written).",
            &metrics.events_duplicate,
        ),
        (
            "crm_append_batches_total",
            "Batches appended by POST /v1/events.",
            &metrics.append_batches,
        ),
        (
            "crm_append_conflicts_total",
            "Batches refused for a conflict with a stream's state.",
            &metrics.append_conflicts,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    let head = *state.store.head_changes().borrow();
    let _ = writeln!(
        out,
        "# HELP crm_log_head_position The highest log position this process has seen.\n\
         # TYPE crm_log_head_position gauge\ncrm_log_head_position {head}"
    );
    out.push_str(
        "# HELP crm_projection_position The log position each read model has reached.\n\
         # TYPE crm_projection_position gauge\n",
    );
    let statuses = state.projections.borrow().clone();
    for status in &statuses {
        let _ = writeln!(
            out,
            "crm_projection_position{{projection=\"{}\"}} {}",
            status.name, status.position
        );
    }
    out.push_str(
        "# HELP crm_projection_lag_events Events between the head and each read model.\n\
         # TYPE crm_projection_lag_events gauge\n",
    );
    for status in &statuses {
        let _ = writeln!(
            out,
            "crm_projection_lag_events{{projection=\"{}\"}} {}",
            status.name,
            head.saturating_sub(status.position)
        );
    }
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_a_fixed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        let odd = Method::from_bytes(&[b'X'; 50_000]).expect("a token");
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&Method::CONNECT), "other");
    }
}
