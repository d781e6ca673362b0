//! Shared pieces of ringmail's benchmarks: a realistic mail generator and helpers to run
//! the engine on a glommio executor.

pub use ringmail_loadgen::mailgen;

use std::path::Path;

/// Runs `f` on a fresh glommio executor, after the device probe the engine needs.
pub fn run_on_executor<F, Fut, T>(dir: &Path, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let dir = dir.to_path_buf();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            ringmail_engine::SlotMap::load_or_create(&dir, 1).expect("superblock");
            ringmail_engine::probe_device(&dir.join("SUPERBLOCK"))
                .await
                .expect("probe");
            f().await
        })
        .expect("executor")
        .join()
        .expect("executor thread")
}

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
