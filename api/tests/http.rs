//! The HTTP application in-process on port 0, over real loopback HTTP.

use crm_api::app::{Limits, router, start};
use crm_core::store::StoreUrl;
use crm_projections::RunnerHandle;

struct TestApp {
    address: String,
    _runner: RunnerHandle,
    _dir: tempfile::TempDir,
}

/// Starts the application on a fresh SQLite store, listening on a free port.
async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(&StoreUrl::default_in(dir.path()), Limits::default())
        .await
        .expect("start");
    let app = router(running.state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestApp {
        address,
        _runner: running.workers,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_the_head_and_every_projection() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/healthz", app.address))
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["head_position"], 0);
    let names: Vec<&str> = body["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // Every read model the project has, in `all_projections()` order (the list a new read
    // model extends).
    let expected: Vec<&str> = crm_projections::all_projections()
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(names, expected);
    assert!(names.contains(&"customer_360") && names.contains(&"consent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_answer_404_as_problem_json() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/v1/nothing-here", app.address))
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], 404);
    assert_eq!(body["detail"], "no route for /v1/nothing-here");
}
