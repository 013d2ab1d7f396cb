//! The pipeline, service, analytics and operations pages in a real headless Chromium at a
//! phone's width, driven over WebDriver (chromedriver's HTTP protocol, spoken with reqwest):
//! with a session's cookie, each page laid out without a horizontal scroll of the page
//! (wide tables scroll in their own box), its charts scaled to the screen, and its stylesheet
//! applied under the CSP. Without chromedriver the test says so loudly and skips, unless
//! `CRM_REQUIRE_BROWSER=1`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crm_api::keys::Role;
use serde_json::{Value, json};

use crate::fixture::TENANT;

/// A phone in portrait: CSS pixels.
const PHONE: (u32, u32) = (390, 844);

struct Driver {
    process: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.process.kill().ok();
        self.process.wait().ok();
    }
}

/// A WebDriver session.
struct Session<'a> {
    driver: &'a Driver,
    url: String,
}

impl Driver {
    fn start() -> Option<Driver> {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("address").port()
        };
        match Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(process) => Some(Driver {
                process,
                base: format!("http://127.0.0.1:{port}"),
                http: reqwest::Client::new(),
            }),
            Err(error) => {
                let required = std::env::var("CRM_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "a browser is required (CRM_REQUIRE_BROWSER=1) but {binary} does not start: {error}"
                );
                eprintln!(
                    "\n!!!!! SKIPPED the console's phone-width browser test: {binary} does not \
                     start ({error}). Install chromium and chromedriver or set CHROMEDRIVER.\n"
                );
                None
            }
        }
    }

    async fn session(&self) -> Session<'_> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                // A window is at least 500 px wide; the emulated phone's viewport is not.
                "mobileEmulation": {"deviceMetrics": {"width": PHONE.0, "height": PHONE.1, "pixelRatio": 2.0}}
            }
        }}});
        loop {
            let answer = self
                .http
                .post(format!("{}/session", self.base))
                .json(&capabilities)
                .send()
                .await;
            if let Ok(answer) = answer {
                let body: Value = answer.json().await.expect("a WebDriver answer");
                let id = body["value"]["sessionId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no session: {body}"));
                return Session {
                    driver: self,
                    url: format!("{}/session/{id}", self.base),
                };
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Session<'_> {
    async fn command(&self, path: &str, body: Value) -> Value {
        let answer = self
            .driver
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("WebDriver command");
        let body: Value = answer.json().await.expect("a WebDriver answer");
        assert!(
            body["value"]["error"].is_null(),
            "{path}: {}",
            body["value"]
        );
        body["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("/url", json!({ "url": url })).await;
    }

    /// Runs a test script in the page (the pages themselves carry none).
    async fn measure(&self, script: &str) -> Value {
        self.command("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    async fn close(self) {
        self.driver
            .http
            .delete(&self.url)
            .send()
            .await
            .expect("end the session");
    }
}

/// What the test measures in a page: its width against the window, each chart's box, and
/// whether the stylesheet applied.
const MEASURE: &str = "
    const root = document.documentElement;
    const charts = [...document.querySelectorAll('figure svg')].map(svg => {
        const box = svg.getBoundingClientRect();
        return { width: box.width, height: box.height, right: box.right };
    });
    const wide = [...document.body.querySelectorAll('*')]
        .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.tagName + (e.id ? '#' + e.id : ''));
    return {
        inner: window.innerWidth,
        scroll: root.scrollWidth,
        charts,
        wide,
        styled: getComputedStyle(document.querySelector('header.top')).display === 'flex',
        h1: document.querySelector('main h1').textContent,
    };
";

#[tokio::test]
async fn the_pages_fit_a_phone_and_their_charts_scale_to_it() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = crate::seeded_app().await;
    let session = driver.session().await;
    // Signed in over HTTP, the session's cookie handed to the browser (signing in through
    // the form in Chromium is `console_browser.rs`'s part).
    let signed_in = crate::Browser::sign_in(&app, app.key(TENANT, Role::Admin)).await;
    let (name, value) = signed_in
        .cookie
        .split_once('=')
        .expect("a name=value cookie");
    session.open(&app.url("/console/sign-in")).await;
    session
        .command(
            "/cookie",
            json!({"cookie": {"name": name, "value": value, "path": "/console",
                              "httpOnly": true, "sameSite": "Strict"}}),
        )
        .await;
    for (path, title, charts) in [
        ("/console/pipeline", "Pipeline", 2),
        ("/console/service", "Service", 0),
        ("/console/analytics?currency=EUR", "Analytics, EUR", 1),
        ("/console/operations", "Operations", 0),
    ] {
        session.open(&app.url(path)).await;
        let page = session.measure(MEASURE).await;
        assert_eq!(page["h1"], title, "{path}: signed in and shown: {page}");
        assert_eq!(
            page["styled"], true,
            "{path}: the stylesheet applies: {page}"
        );
        let inner = page["inner"].as_f64().expect("width");
        assert!(
            inner <= f64::from(PHONE.0),
            "{path}: a phone's width: {page}"
        );
        assert!(
            page["scroll"].as_f64().expect("scroll width") <= inner,
            "{path}: the page scrolls sideways: {page}"
        );
        assert_eq!(
            page["wide"],
            json!([]),
            "{path}: wider than the screen: {page}"
        );
        let drawn = page["charts"].as_array().expect("charts");
        assert_eq!(drawn.len(), charts, "{path}: {page}");
        for chart in drawn {
            let width = chart["width"].as_f64().expect("width");
            let height = chart["height"].as_f64().expect("height");
            assert!(
                width > inner * 0.8 && chart["right"].as_f64() <= Some(inner),
                "{path}: {chart}"
            );
            // The height follows the width through the viewBox, not a fixed size.
            assert!(height > 50.0 && height < width * 2.0, "{path}: {chart}");
        }
    }
    session.close().await;
}
