//! The log's output: lines collected in memory and written to stderr by a thread of their
//! own, a batch at a time.
//!
//! A delivering server logs a line per delivery, tens of thousands a second. Written by the
//! shard itself, each line was a system call on the delivery path; handed to a writer
//! thread per line (tracing-appender), each woke that thread, and on two cores the
//! wake-ups and context switches cost about 6 µs of CPU per delivery, 16 % of all of it;
//! batched, a line costs about 2.5 µs (`docs/benchmarks.md`, session 10). Here a line is
//! appended to a shared buffer under a mutex held
//! for a copy, and the writer wakes every [`FLUSH_EVERY`] (or at once when the buffer passes
//! [`WAKE_AT`]) to write whatever accumulated in one call. A line reaches stderr at most
//! about 50 ms after it was logged; at exit everything is written. If stderr stops taking
//! lines, the buffer grows to [`MAX_BUFFER`], then lines are dropped and counted, and the
//! count is logged when writing works again: a shard never waits for the log.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const WAKE_AT: usize = 256 << 10;
const MAX_BUFFER: usize = 64 << 20;

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: AtomicU64,
}

/// Where `tracing_subscriber::fmt` writes (see the module comment).
#[derive(Clone)]
pub struct Batched(Arc<Shared>);

/// Writes what is left and stops the writer thread when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A writer of batches to `out`, and the guard that ends it.
pub fn batched<W: Write + Send + 'static>(mut out: W) -> (Batched, Guard) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(WAKE_AT)),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("ringmail-log".into())
        .spawn(move || {
            let mut spare = Vec::with_capacity(WAKE_AT);
            loop {
                let stopping = {
                    let g = s.buf.lock().unwrap_or_else(|e| e.into_inner());
                    let (mut g, _) = s
                        .wake
                        .wait_timeout_while(g, FLUSH_EVERY, |b| {
                            b.len() < WAKE_AT && !s.stop.load(Ordering::Relaxed)
                        })
                        .unwrap_or_else(|e| e.into_inner());
                    std::mem::swap(&mut *g, &mut spare);
                    s.stop.load(Ordering::Relaxed)
                };
                if !spare.is_empty() {
                    let _ = out.write_all(&spare);
                    let dropped = s.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        let _ = writeln!(
                            out,
                            "ringmail: {dropped} log lines were dropped (stderr did not keep up)"
                        );
                    }
                    let _ = out.flush();
                    spare.clear();
                    if spare.capacity() > 4 * WAKE_AT {
                        spare = Vec::with_capacity(WAKE_AT);
                    }
                }
                if stopping {
                    return;
                }
            }
        })
        .ok();
    (Batched(shared.clone()), Guard { shared, thread })
}

impl Write for Batched {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut g = self.0.buf.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() + line.len() > MAX_BUFFER {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let was = g.len();
        g.extend_from_slice(line);
        if was < WAKE_AT && g.len() >= WAKE_AT {
            self.0.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batched {
    type Writer = Batched;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_in_order_soon_and_all_at_exit() {
        let sink = Sink::default();
        let (mut w, guard) = batched(sink.clone());
        w.write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "not written");
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in 0..10_000 {
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_001);
        assert_eq!(lines[0], "one");
        assert_eq!(lines[10_000], "line 9999");
    }
}
