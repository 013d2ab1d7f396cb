//! Progress for long work: on a terminal, one line on stderr redrawn at most ten times a
//! second (events done, events/s, time left when the total is known); off a terminal, nothing
//! until the one-line summary. Tools call [`Progress::advance`] as work completes and
//! [`Progress::finish`] once.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A progress line for `label` (e.g. "import").
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
    terminal: bool,
}

impl Progress {
    /// `total`: the work expected, when known (events to read, positions to reach).
    pub fn new(label: &'static str, total: Option<u64>) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            started: Instant::now(),
            last_draw: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Records `n` more units done.
    pub fn advance(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// Records the units done so far.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if !self.terminal {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|at| now - at < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(now);
        let line = self.line();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Units per second so far.
    pub fn rate(&self) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            self.done as f64 / seconds
        } else {
            0.0
        }
    }

    fn line(&self) -> String {
        let rate = self.rate();
        let mut line = format!("{}: {} events, {:.0} events/s", self.label, self.done, rate);
        if let Some(total) = self.total {
            let percent = if total > 0 {
                self.done as f64 * 100.0 / total as f64
            } else {
                100.0
            };
            line.push_str(&format!(", {percent:.1}% of {total}"));
            if rate > 0.0 && total > self.done {
                let left = (total - self.done) as f64 / rate;
                line.push_str(&format!(", {} left", human(Duration::from_secs_f64(left))));
            }
        }
        line
    }

    /// Clears the progress line; the caller prints its summary after.
    pub fn finish(&mut self) {
        if self.terminal && self.last_draw.is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

/// `1h02m`, `3m05s`, `12.3s`.
pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else if seconds < 3600.0 {
        format!(
            "{}m{:02}s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    } else {
        format!(
            "{}h{:02}m",
            (seconds / 3600.0) as u64,
            ((seconds % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(3_720)), "1h02m");
    }

    #[test]
    fn the_line_shows_done_rate_and_share_of_the_total() {
        let mut progress = Progress::new("import", Some(200));
        progress.terminal = false;
        progress.set(50);
        let line = progress.line();
        assert!(line.starts_with("import: 50 events, "), "{line}");
        assert!(line.contains("25.0% of 200"), "{line}");
    }
}
