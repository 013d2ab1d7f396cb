//! The real `crm-api serve` on a fresh SQLite store and a free port (the same start as
//! `tests/binary.rs`), with its first-start admin key, its process id (for its memory) and a
//! raw-socket client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The admin key the first start printed.
    pub key: String,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

impl Server {
    /// Starts `serve` with `extra` flags; with `nofile`, under that descriptor limit (soft and
    /// hard, set by the shell before it becomes the server).
    pub fn start(extra: &[&str], nofile: Option<u64>) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = match nofile {
            Some(limit) => {
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("CRM_MASTER_KEY_FILE", dir.path().join("master.key"))
            .env("CRM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crm-api");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let found = stderr.lock().expect("lines").iter().find_map(|line| {
                let rest = line.split("address=").nth(1)?;
                line.contains("listening").then(|| {
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
            });
            if let Some(address) = found {
                break address;
            }
            assert!(
                Instant::now() < deadline && child.try_wait().expect("wait").is_none(),
                "the server never listened: {:?}",
                stderr.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let key = stdout
            .lock()
            .expect("lines")
            .iter()
            .find(|line| line.starts_with("crm_"))
            .cloned()
            .expect("the first start prints the admin key");
        Server {
            child,
            address,
            key,
            stderr,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The server's resident memory now (`VmRSS`) and at its peak (`VmHWM`), in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = format!("/proc/{}/status", self.child.id());
        (
            crm_tests::api_bench::rss_mib(&status).expect("VmRSS"),
            crm_tests::api_bench::peak_rss_mib(&status).expect("VmHWM"),
        )
    }

    pub fn log(&self) -> String {
        self.stderr.lock().expect("lines").join("\n")
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// A raw connection, with `timeout` on reads.
    pub fn connect(&self, timeout: Duration) -> TcpStream {
        let stream = TcpStream::connect(&self.address).expect("connect");
        stream.set_read_timeout(Some(timeout)).expect("timeout");
        stream
    }

    /// Runs `crm-api keys ARGS` on the server's store.
    pub fn keys(&self, args: &[&str]) -> String {
        let output = Command::new(BIN)
            .arg("keys")
            .args(args)
            .arg("--data-dir")
            .arg(self._dir.path())
            .env("CRM_MASTER_KEY_FILE", self._dir.path().join("master.key"))
            .output()
            .expect("crm-api keys");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the peer closes, the read times out or fails: what arrived, and whether the
/// connection was closed (end of stream or reset) rather than timed out.
pub fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (received, true),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (received, false);
            }
            Err(_) => return (received, true),
        }
    }
}

/// Sends a raw request and reads the answer until the server closes the connection.
pub fn raw_request(address: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(request);
    read_until_closed(&mut stream).0
}
