//! The live progress line on stderr, once a second: requests done, the last second's rate,
//! errors, and the p99 of the measured requests so far.
//!
//! Each worker records into its own mutex-guarded histogram (uncontended but for the one
//! read a second), which the progress loop drains into a running total.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

pub(crate) fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

pub(crate) fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 3_600_000_000)
}

/// Latencies so far, for the progress line.
pub(crate) struct Live {
    per_worker: Vec<Mutex<Histogram<u64>>>,
    total: Mutex<Histogram<u64>>,
    last_done: AtomicU64,
}

impl Live {
    /// `workers` histograms, or none (recording is then a no-op) when there is no line.
    pub(crate) fn new(workers: usize) -> Live {
        Live {
            per_worker: (0..workers).map(|_| Mutex::new(hist())).collect(),
            total: Mutex::new(hist()),
            last_done: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, w: usize, d: Duration) {
        if let Some(h) = self.per_worker.get(w) {
            if let Ok(mut h) = h.lock() {
                let _ = h.record(micros(d));
            }
        }
    }

    /// The line for second `t`, given the totals so far.
    pub(crate) fn line(&self, t: u64, done: u64, errors: u64) -> String {
        let mut total = self.total.lock().expect("no panics while held");
        for h in &self.per_worker {
            if let Ok(mut h) = h.lock() {
                let _ = total.add(&*h);
                h.reset();
            }
        }
        let rate = done.saturating_sub(self.last_done.swap(done, Ordering::Relaxed));
        let p99 = if total.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}ms", total.value_at_quantile(0.99) as f64 / 1000.0)
        };
        format!("t={t}s done={done} rate={rate}/s errors={errors} p99={p99}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_rate_errors_and_p99() {
        let l = Live::new(2);
        assert_eq!(l.line(1, 0, 0), "t=1s done=0 rate=0/s errors=0 p99=-");
        for i in 0..100 {
            l.record(i % 2, Duration::from_millis(if i == 0 { 50 } else { 1 }));
        }
        assert_eq!(
            l.line(2, 100, 3),
            "t=2s done=100 rate=100/s errors=3 p99=1.00ms"
        );
        l.record(0, Duration::from_millis(80));
        l.record(0, Duration::from_millis(80));
        let s = l.line(3, 150, 3);
        assert!(
            s.starts_with("t=3s done=150 rate=50/s errors=3 p99=80."),
            "{s}"
        );
    }
}
