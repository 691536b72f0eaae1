//! What kiln tells the user: one line per step with its time, a summary at the
//! end, progress bars only when stderr is a terminal. Details go through `tracing`
//! (`-v`).

pub mod busy;
pub mod json;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json as j;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Reporter {
    pub tty: bool,
    pub start: Instant,
    /// GitLab CI (`GITLAB_CI=true`): stages and RUN output in collapsible sections.
    pub gitlab: bool,
    /// What `--report` writes: every step, and the bases.
    record: std::sync::Mutex<Record>,
}

/// One step of the build, as the JSON report gives it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    pub step: String,
    pub instruction: String,
    /// BUILT, CACHED, WARMED, or empty for metadata steps.
    pub result: String,
    pub seconds: f64,
    pub layer: Option<LayerRecord>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerRecord {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BaseRecord {
    pub name: String,
    pub digest: String,
}

/// A RUN step that ran under an emulator, and which.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmulatedRecord {
    pub step: String,
    pub platform: String,
    /// The host's binfmt_misc handler, or the emulator kiln's exec tracer ran.
    pub by: String,
}

/// Time spent in one kind of work, summed over the build: how often, how long,
/// and over how many bytes.
#[derive(Debug, Default, Clone)]
pub struct Phase {
    pub count: u64,
    pub seconds: f64,
    pub bytes: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Record {
    pub steps: Vec<StepRecord>,
    pub bases: Vec<BaseRecord>,
    pub emulated: Vec<EmulatedRecord>,
    /// Layer hints, as the report lists them.
    pub hints: Vec<serde_json::Value>,
    /// Where the time went, by kind of work (`extract`: layers written into a
    /// rootfs for a step).
    pub phases: std::collections::BTreeMap<&'static str, Phase>,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            gitlab: std::env::var("GITLAB_CI").is_ok_and(|v| v == "true"),
            record: Default::default(),
        }
    }
}

/// A line for the user (a note, a summary), in either log format.
pub fn message(msg: &str) {
    if json::on() {
        json::emit("info", "message", msg, Default::default());
    } else {
        eprintln!("{msg}");
    }
}

/// A warning, in either log format.
pub fn warning(msg: &str) {
    if json::on() {
        json::emit("warning", "warning", msg, Default::default());
    } else {
        eprintln!("warning: {msg}");
    }
}

/// A line of a RUN step's output, in either log format.
pub fn run_output(label: &str, text: &str) {
    if json::on() {
        json::emit(
            "info",
            "run_output",
            text,
            json::fields([("step", j!(label))]),
        );
    } else {
        eprintln!("[{label}] │ {text}");
    }
}

/// The error that ends the run, in either log format.
pub fn error(msg: &str) {
    if json::on() {
        json::emit("error", "error", msg, Default::default());
    } else {
        eprintln!("error: {msg}");
    }
}

/// A GitLab section name: letters, digits, `_`, `.` and `-` only.
fn section_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
        self.step_with_layer(label, text, took, note, None);
    }

    /// A step begins (a JSON event; text mode prints the step when it ends).
    pub fn step_start(&self, label: &str, text: &str) {
        if json::on() {
            json::emit(
                "info",
                "step_start",
                &format!("[{label}] {text}"),
                json::fields([("step", j!(label)), ("instruction", j!(text))]),
            );
        }
    }

    /// A step's line, with the layer it added (digest, size).
    pub fn step_with_layer(
        &self,
        label: &str,
        text: &str,
        took: Duration,
        note: &str,
        layer: Option<(&str, u64)>,
    ) {
        let mut t: String = text.chars().take(70).collect();
        if text.chars().count() > 70 {
            t.push('…');
        }
        let shown = if note.is_empty() {
            String::new()
        } else {
            format!("  {note}")
        };
        let line = format!("[{label}] {t:<72} {:>6.2}s{shown}", took.as_secs_f64());
        let result = note
            .split_whitespace()
            .next()
            .filter(|w| matches!(*w, "BUILT" | "CACHED" | "WARMED"))
            .unwrap_or("")
            .to_string();
        let seconds = (took.as_secs_f64() * 1000.0).round() / 1000.0;
        let layer = layer.map(|(digest, size)| LayerRecord {
            digest: digest.to_string(),
            size,
        });
        if json::on() {
            // `push` and `output` lines are the pushes and the local outputs.
            let (event, what) = match label {
                "push" => ("push", "destination"),
                "output" => ("output", "output"),
                _ => ("step", "instruction"),
            };
            let mut f = json::fields([
                (what, j!(text)),
                ("seconds", j!(seconds)),
                ("note", j!(note)),
            ]);
            if event == "step" {
                f.insert("step".into(), j!(label));
                f.insert("result".into(), j!(result));
                f.insert("layer".into(), j!(layer));
            }
            let msg = format!("[{label}] {text} {:.2}s{shown}", took.as_secs_f64());
            json::emit("info", event, &msg, f);
        } else {
            eprintln!("{line}");
        }
        if let Ok(mut r) = self.record.lock() {
            r.steps.push(StepRecord {
                step: label.to_string(),
                instruction: text.to_string(),
                result,
                seconds,
                layer,
            });
        }
    }

    /// A base image the build pulled.
    pub fn base(&self, name: &str, digest: &str) {
        if json::on() {
            json::emit(
                "info",
                "pull",
                &format!("pulled {name} as {digest}"),
                json::fields([("image", j!(name)), ("digest", j!(digest))]),
            );
        }
        if let Ok(mut r) = self.record.lock() {
            r.bases.push(BaseRecord {
                name: name.to_string(),
                digest: digest.to_string(),
            });
        }
    }

    /// A RUN step about to run under an emulator (the report's `emulated`).
    pub fn emulated(&self, step: &str, platform: &str, by: &str) {
        if let Ok(mut r) = self.record.lock() {
            r.emulated.push(EmulatedRecord {
                step: step.to_string(),
                platform: platform.to_string(),
                by: by.to_string(),
            });
        }
    }

    /// Count `took` and `bytes` to a phase of the build.
    pub fn phase(&self, name: &'static str, took: Duration, bytes: u64) {
        if let Ok(mut r) = self.record.lock() {
            let p = r.phases.entry(name).or_default();
            p.count += 1;
            p.seconds += took.as_secs_f64();
            p.bytes += bytes;
        }
    }

    pub fn record(&self) -> Record {
        self.record.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// In GitLab CI, open a collapsible log section (`id` unique in the job).
    pub fn section_start(&self, id: &str, header: &str, collapsed: bool) {
        if self.gitlab && !json::on() {
            eprintln!(
                "\x1b[0Ksection_start:{}:{}{}\r\x1b[0K{header}",
                unix_now(),
                section_name(id),
                if collapsed { "[collapsed=true]" } else { "" }
            );
        }
    }

    pub fn section_end(&self, id: &str) {
        if self.gitlab && !json::on() {
            eprintln!(
                "\x1b[0Ksection_end:{}:{}\r\x1b[0K",
                unix_now(),
                section_name(id)
            );
        }
    }

    pub fn line(&self, msg: &str) {
        message(msg);
    }

    pub fn warn(&self, msg: &str) {
        warning(msg);
    }

    /// A layer hint: a `hint:` line (when `line` is given) and its record in
    /// the report.
    pub fn hint(&self, line: Option<&str>, record: serde_json::Value) {
        if let Some(l) = line {
            if json::on() {
                json::emit("info", "hint", l, json::fields([("hint", record.clone())]));
            } else {
                eprintln!("hint: {l}");
            }
        }
        if let Ok(mut r) = self.record.lock() {
            r.hints.push(record);
        }
    }

    /// A progress bar for a transfer, only on a terminal: the bytes `live` has
    /// counted since now, of `total` when known, with the rate. Cleared when
    /// dropped; plain timed lines say what happened.
    pub fn transfer(
        &self,
        msg: &str,
        total: Option<u64>,
        live: Arc<AtomicU64>,
    ) -> Option<Transfer> {
        if !self.tty || json::on() {
            return None;
        }
        let template = match total {
            Some(_) => {
                "{spinner} {msg} {bar:24} {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}"
            }
            None => "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}",
        };
        let pb = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg.to_string());
        pb.tick();
        let start = live.load(Ordering::Relaxed);
        let bar = pb.clone();
        let poll = std::thread::spawn(move || {
            while !bar.is_finished() {
                bar.set_position(live.load(Ordering::Relaxed).saturating_sub(start));
                bar.tick();
                std::thread::park_timeout(Duration::from_millis(120));
            }
        });
        Some(Transfer {
            pb,
            poll: Some(poll),
        })
    }

    /// A spinner for a long operation, only on a terminal.
    pub fn spinner(&self, msg: &str) -> Option<ProgressBar> {
        if !self.tty || json::on() {
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

/// A transfer's progress bar (see [`Reporter::transfer`]).
pub struct Transfer {
    pb: ProgressBar,
    poll: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.pb.finish_and_clear();
        if let Some(t) = self.poll.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
