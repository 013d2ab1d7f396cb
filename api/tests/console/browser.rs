//! Headless Chromium through chromedriver (fantoccini, plain HTTP on loopback), with the
//! checks every console page must pass: no request to another origin, no Content Security
//! Policy violation, no inline style or script, no axe-core violation of impact `serious` or
//! `critical`; and a screenshot per page when `CRM_CONSOLE_SCREENSHOTS=<dir>` is set.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::processes::{BrowserTools, Chromedriver};

/// axe-core 4.10.3, vendored (see `README.md` beside it).
const AXE: &str = include_str!("axe.min.js");

/// The policy the contract puts on every console answer.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One browser session on one server.
pub struct Browser {
    pub client: Client,
    driver_url: String,
    session: String,
    /// `http://host:port` of the server under test.
    pub origin: String,
    screenshots: Option<PathBuf>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn open(tools: &BrowserTools, driver: &Chromedriver, origin: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tools.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         "--disable-background-networking", "--disable-extensions",
                         "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a chromedriver session");
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(60)),
                Some(Duration::ZERO),
            ))
            .await
            .expect("timeouts");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let screenshots = std::env::var_os("CRM_CONSOLE_SCREENSHOTS").map(PathBuf::from);
        if let Some(dir) = &screenshots {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        Browser {
            client,
            driver_url: driver.url.clone(),
            session,
            origin: origin.to_owned(),
            screenshots,
            _profile: profile,
        }
    }

    /// Navigates to `path` on the server (no checks).
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.origin))
            .await
            .unwrap_or_else(|e| panic!("load {path}: {e}"));
    }

    /// The path (and query) the browser shows now.
    pub async fn location(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Loads `path`, checks it was not sent elsewhere (sign-in, another page), that it is not
    /// an error page, and runs [`Browser::check_page`]; `shot` names its screenshot.
    pub async fn visit(&self, path: &str, shot: Option<&str>) {
        self.goto(path).await;
        let at = self.location().await;
        let wanted = path.split('?').next().unwrap_or(path);
        assert!(
            at.starts_with(wanted),
            "{path}: the browser ended at {at}: {}",
            self.text_of("main").await.unwrap_or_default()
        );
        if let Some(error) = self.text_of("#error").await {
            panic!("{path}: an error page: {error}");
        }
        self.must_have(path, "main#main h1").await;
        self.check_page(path).await;
        if let Some(name) = shot {
            self.screenshot(name).await;
        }
    }

    /// The page's text at `css`, when there is such an element.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => Some(element.text().await.unwrap_or_default()),
            Err(_) => None,
        }
    }

    /// Whether the page holds an element matching `css`.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
            .is_empty()
    }

    /// A named check: the page must hold `css`, else the failure names the page and what
    /// the contract promised there.
    pub async fn must_have(&self, page: &str, css: &str) {
        // A click's page may still be arriving: a few seconds' grace.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.has(css).await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            self.has(css).await,
            "{page}: the contract promises `{css}` on this page, and it is missing (is the \
             page written yet?) at {}",
            self.location().await
        );
    }

    pub async fn click(&self, css: &str) {
        let at = self.location().await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css} at {at}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Sets a form field's value as a user's typing would end (date inputs take ISO text
    /// this way whatever the browser's locale).
    pub async fn set_value(&self, css: &str, value: &str) {
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); \
                 if (!e) { return false; } e.value = arguments[1]; return true;",
                vec![json!(css), json!(value)],
            )
            .await
            .map(|found| assert_eq!(found, json!(true), "no {css} to fill in"))
            .expect("set a value");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        element.clear().await.expect("clear");
        element.send_keys(text).await.expect("type");
    }

    /// Signs in with `key` on the sign-in page; the browser ends where the server sent it.
    pub async fn sign_in(&self, key: &str) {
        self.goto("/console/sign-in").await;
        self.type_into("#key", key).await;
        self.click("#sign-in").await;
    }

    /// Signs in with `key` and expects the customers list, where a session starts.
    pub async fn sign_in_to_list(&self, key: &str) {
        self.sign_in(key).await;
        assert!(
            self.wait_for_location("/console/customers", Duration::from_secs(10))
                .await,
            "signed in, the browser is at {}: {:?}",
            self.location().await,
            self.text_of("#error").await
        );
    }

    /// Signs out from the customers list (every page of the shell has the button; an
    /// error page may not) and waits for the sign-in page.
    pub async fn sign_out(&self) {
        self.goto("/console/customers").await;
        self.click("#sign-out").await;
        assert!(
            self.wait_for_location("/console/sign-in", Duration::from_secs(10))
                .await,
            "signed out, the browser is at {}",
            self.location().await
        );
    }

    /// Waits (up to `limit`) until the browser shows a path starting with `path`.
    pub async fn wait_for_location(&self, path: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.location().await.starts_with(path) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Every `[data-figure]` of the page: (path, value).
    pub async fn figures(&self) -> Vec<(String, String)> {
        let found = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll('[data-figure]'))\
                 .map(e => [e.getAttribute('data-figure'), e.getAttribute('data-value')]);",
                vec![],
            )
            .await
            .expect("read the figures");
        serde_json::from_value(found).expect("pairs of text")
    }

    /// The value of the session cookie, for calls beside the browser.
    pub async fn session_cookie(&self) -> Option<String> {
        let cookie = self.client.get_named_cookie("crm_console").await.ok()?;
        Some(cookie.value().to_owned())
    }

    /// The checks every console page must pass (see the module's header).
    pub async fn check_page(&self, page: &str) {
        self.same_origin_only(page).await;
        self.no_csp_violation(page).await;
        self.accessible(page).await;
    }

    async fn same_origin_only(&self, page: &str) {
        let found = self
            .client
            .execute(
                "return {origin: location.origin, \
                   resources: performance.getEntriesByType('resource').map(e => e.name), \
                   inline: document.querySelectorAll('[style], style, script').length};",
                vec![],
            )
            .await
            .expect("read the page's requests");
        let origin = found["origin"].as_str().unwrap_or_default();
        assert_eq!(origin, self.origin, "{page}: the page's own origin");
        let foreign: Vec<&Value> = found["resources"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|r| !r.as_str().unwrap_or_default().starts_with(origin))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            foreign.is_empty(),
            "{page}: requests to another origin: {foreign:?}"
        );
        assert_eq!(
            found["inline"],
            json!(0),
            "{page}: inline style attributes, <style> or <script> elements, which the CSP \
             forbids"
        );
    }

    /// Chromium logs each blocked load, inline style or script to the browser console;
    /// chromedriver hands those lines over (`goog:loggingPrefs`). Reading them empties
    /// the log, so each page is judged on its own lines.
    pub async fn csp_violations(&self) -> Vec<Value> {
        let answer = reqwest::Client::new()
            .post(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session
            ))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("chromedriver's browser log");
        assert!(answer.status().is_success(), "the browser log: {answer:?}");
        let log: Value = answer.json().await.expect("log json");
        log["value"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .filter(|l| {
                        let text = l["message"].as_str().unwrap_or_default();
                        text.contains("Content Security Policy") || text.contains("Refused to")
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn no_csp_violation(&self, page: &str) {
        let violations = self.csp_violations().await;
        assert!(
            violations.is_empty(),
            "{page}: Content Security Policy violations: {violations:#?}"
        );
    }

    /// axe-core in the page, through WebDriver (which runs scripts whatever the page's CSP).
    async fn accessible(&self, page: &str) {
        let loaded = self
            .client
            .execute(&format!("{AXE}\n;return typeof axe;"), vec![])
            .await
            .expect("inject axe-core");
        assert_eq!(loaded, json!("object"), "{page}: axe-core did not load");
        let result = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                const serious = (v) => v.impact === 'serious' || v.impact === 'critical';
                const describe = (v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ': ' + n.failureSummary),
                });
                axe.run(document, {resultTypes: ['violations']})
                    .then((r) => done({violations: r.violations.filter(serious).map(describe)}))
                    .catch((e) => done({error: String(e)}));"#,
                vec![],
            )
            .await
            .expect("run axe-core");
        assert!(
            result["error"].is_null(),
            "{page}: axe-core failed: {result}"
        );
        let violations = result["violations"].as_array().cloned().unwrap_or_default();
        assert!(
            violations.is_empty(),
            "{page}: accessibility violations (serious or critical):\n{}",
            serde_json::to_string_pretty(&violations).unwrap_or_default()
        );
    }

    /// A PNG of the window when `CRM_CONSOLE_SCREENSHOTS` names a directory.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = &self.screenshots else {
            return;
        };
        // The whole page, not only the window: as tall as the document.
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .ok()
            .and_then(|h| h.as_u64())
            .unwrap_or(900)
            .clamp(600, 4_000) as u32;
        let (width, old_height) = self.client.get_window_size().await.expect("window size");
        self.client
            .set_window_size(width as u32, height)
            .await
            .expect("resize for the screenshot");
        let png = self.client.screenshot().await.expect("screenshot");
        self.client
            .set_window_size(width as u32, old_height as u32)
            .await
            .expect("resize back");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }
}
