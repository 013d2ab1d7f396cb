//! A real `crm-api serve` process for end-to-end tests: started from the caller's command
//! (which sets the store, the data dir, `--listen 127.0.0.1:0`), its stderr collected, its
//! address taken from the line it logs once listening; stopped with SIGTERM when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `crm-api serve`.
#[derive(Debug)]
pub struct Served {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
    log: Arc<Mutex<Vec<String>>>,
    killed: bool,
}

impl Served {
    /// Spawns `command` with `CRM_LOG=info` and waits (up to 60 s) until the server logs
    /// the address it listens on and `ready()` holds (e.g. `admin.key` was written).
    /// Panics with the server's log when it never gets there; a failed start still stops
    /// the process.
    pub fn start(command: &mut Command, ready: impl Fn() -> bool) -> Served {
        let mut child = command
            .env("CRM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crm-api serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        let mut served = Served {
            child,
            address: String::new(),
            log,
            killed: false,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let address = served.log.lock().expect("log").iter().find_map(|line| {
                let rest = line.split("address=").nth(1)?;
                line.contains("listening").then(|| {
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
            });
            if let Some(address) = address
                && ready()
            {
                served.address = address;
                return served;
            }
            assert!(
                Instant::now() < deadline,
                "crm-api did not listen: {}",
                served.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.killed = true;
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.killed {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
