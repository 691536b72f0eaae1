//! What kiln tells the user: one line per step with its time, a summary at the
//! end, progress bars only when stderr is a terminal. Details go through `tracing`
//! (`-v`).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Reporter {
    pub tty: bool,
    pub start: Instant,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Reporter {
    /// `[stage 2/5] COPY src/ /app/                                0.12s`
    pub fn step(&self, label: &str, text: &str, took: Duration, note: &str) {
        let mut t: String = text.chars().take(70).collect();
        if text.chars().count() > 70 {
            t.push('…');
        }
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("  {note}")
        };
        eprintln!("[{label}] {t:<72} {:>6.2}s{note}", took.as_secs_f64());
    }

    pub fn line(&self, msg: &str) {
        eprintln!("{msg}");
    }

    pub fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }

    /// A spinner for a long operation, only on a terminal.
    pub fn spinner(&self, msg: &str) -> Option<ProgressBar> {
        if !self.tty {
            return None;
        }
        let pb = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            pb.set_style(style);
        }
        pb.set_message(msg.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Some(pb)
    }
}
