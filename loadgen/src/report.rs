//! Merged results: a table per command, and a JSON report for machines.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::mixed;
use crate::run::{Config, WorkerResult, Workload};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandStats {
    pub count: u64,
    pub rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub workload: String,
    pub target: String,
    pub connections: usize,
    pub rate: Option<f64>,
    pub seed: u64,
    pub seconds: f64,
    pub commands: BTreeMap<String, CommandStats>,
    pub errors: BTreeMap<String, u64>,
    pub bytes: u64,
    /// Completions in each second of the run.
    pub timeline: Vec<u64>,
    /// Errors in each second of the run (a failover shows here).
    #[serde(default)]
    pub error_timeline: Vec<u64>,
    /// Latency percentile curves: command → (percentile, ms) points.
    pub percentiles: BTreeMap<String, Vec<(f64, f64)>>,
    /// The load generator's own CPU time per request (user + system), in microseconds.
    pub client_cpu_us_per_request: f64,
    /// Every acknowledged message: recipient → ids (for `verify`).
    pub acked: BTreeMap<String, Vec<String>>,
}

impl Report {
    pub(crate) fn merge(cfg: &Config, results: Vec<WorkerResult>, elapsed: Duration) -> Report {
        let mut hists: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let mut acked: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut bytes = 0;
        for r in results {
            for (k, h) in r.hist {
                let k = format!("{}{k}", r.prefix);
                match hists.get_mut(&k) {
                    Some(m) => {
                        let _ = m.add(&h);
                    }
                    None => {
                        hists.insert(k, h);
                    }
                }
            }
            for (k, n) in r.errors {
                *errors.entry(format!("{}{k}", r.prefix)).or_default() += n;
            }
            for (u, id) in r.acked {
                acked.entry(u).or_default().push(id);
            }
            bytes += r.bytes;
        }
        let secs = elapsed.as_secs_f64();
        let ms = |us: u64| us as f64 / 1000.0;
        // Percentiles 0, 50, 90, 99, 99.9, … 99.9999, as on HdrHistogram's own plots.
        let points: Vec<f64> = [
            0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 99.9999,
        ]
        .to_vec();
        let percentiles = hists
            .iter()
            .map(|(k, h)| {
                (
                    k.to_string(),
                    points
                        .iter()
                        .map(|&p| (p, ms(h.value_at_percentile(p))))
                        .collect(),
                )
            })
            .collect();
        let commands = hists
            .into_iter()
            .map(|(k, h)| {
                (
                    k,
                    CommandStats {
                        count: h.len(),
                        rate: h.len() as f64 / secs,
                        p50_ms: ms(h.value_at_quantile(0.5)),
                        p90_ms: ms(h.value_at_quantile(0.9)),
                        p99_ms: ms(h.value_at_quantile(0.99)),
                        p999_ms: ms(h.value_at_quantile(0.999)),
                        max_ms: ms(h.max()),
                    },
                )
            })
            .collect();
        let target = match &cfg.mixed {
            Some(m) if cfg.workload == Workload::Mixed => m
                .targets
                .iter()
                .filter(|(k, _)| m.shares.iter().any(|s| s.0 == *k))
                .map(|(k, a)| format!("{} {a}", mixed::name(*k)))
                .collect::<Vec<_>>()
                .join(", "),
            _ => std::iter::once(&cfg.target)
                .chain(&cfg.more_targets)
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        Report {
            workload: format!("{:?}", cfg.workload).to_lowercase(),
            target,
            connections: cfg.connections,
            rate: cfg.rate,
            seed: cfg.seed,
            seconds: secs,
            commands,
            errors,
            bytes,
            timeline: Vec::new(),
            error_timeline: Vec::new(),
            percentiles,
            client_cpu_us_per_request: 0.0,
            acked,
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "{} against {}: {} connections, {:.1} s, seed {}\n{:<20} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            self.workload, self.target, self.connections, self.seconds, self.seed, "command", "count", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (k, c) in &self.commands {
            s.push_str(&format!(
                "{k:<20} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                c.count, c.rate, c.p50_ms, c.p90_ms, c.p99_ms, c.p999_ms, c.max_ms
            ));
        }
        s.push_str(&format!(
            "load generator CPU per request: {:.1} µs\n",
            self.client_cpu_us_per_request
        ));
        if self.errors.is_empty() {
            s.push_str("errors: none\n");
        } else {
            for (k, n) in &self.errors {
                s.push_str(&format!("errors: {n} {k}\n"));
            }
        }
        s
    }
}
