//! Where a build's CPU went, by kind of work, for `--report`'s `busy`: seconds
//! each kind kept a thread busy, summed over threads (they overlap one another
//! and the phases, and together can exceed the wall time).
//!
//! The counters are process-wide: one `kiln build` is one process; under
//! `kiln bake` every target's report shows the whole run's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// Reading files into a layer (the context, or a stage's files).
    Read,
    /// sha256 of what kiln writes or fetches (layers, blobs).
    Hash,
    /// gzip of layers (CPU of the parallel gzip threads; zstd's own threads
    /// are not counted).
    Compress,
    /// Writing a copied layer's files into the stage's filesystem, beside its compression.
    Extract,
}

const NAMES: [&str; 4] = ["read", "hash", "compress", "extract"];
static NANOS: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

/// Count `took` to `work`.
pub fn add(work: Work, took: Duration) {
    NANOS[work as usize].fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
}

/// Run `f`, counting its wall time to `work` (for short calls on a busy thread).
pub fn time<T>(work: Work, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    add(work, t.elapsed());
    out
}

/// The CPU time the calling thread has used so far (for threads that do one
/// kind of work and wait otherwise: their wall time would count the waits).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is; the clock id is valid.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Each kind's seconds so far, by name.
pub fn totals() -> Vec<(&'static str, f64)> {
    NAMES
        .iter()
        .zip(NANOS.iter())
        .map(|(n, v)| (*n, v.load(Ordering::Relaxed) as f64 / 1e9))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_counts_work_not_sleep() {
        let t0 = thread_cpu();
        std::thread::sleep(Duration::from_millis(50));
        let slept = thread_cpu() - t0;
        let t1 = thread_cpu();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let worked = thread_cpu() - t1;
        assert!(
            slept < Duration::from_millis(20),
            "sleep is not CPU: {slept:?}"
        );
        assert!(
            worked > Duration::from_millis(25),
            "a busy loop is: {worked:?}"
        );
    }

    #[test]
    fn counted_work_shows_in_the_totals() {
        let before = totals()[2].1;
        add(Work::Compress, Duration::from_millis(1500));
        let after = totals()[2].1;
        assert!(after - before >= 1.5, "{before} -> {after}");
        assert_eq!(totals()[2].0, "compress");
    }
}
