//! `plot`: a report's latency percentile curves and throughput over time, as one SVG.

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 900.0;
const H: f64 = 320.0;
const M: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// x position of a percentile on the usual "nines" axis: log10(1 / (1 - p)).
fn nines(p: f64) -> f64 {
    (1.0 / (1.0 - (p / 100.0).min(0.999_999))).log10()
}

pub fn svg(r: &Report) -> String {
    let mut s = String::new();
    let total_h = 2.0 * H + 3.0 * M;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{M}" y="20" font-size="14">{} against {} — {} connections, {:.0} s</text>"#,
        r.workload, r.target, r.connections, r.seconds
    );

    // Latency percentiles.
    let top = M;
    let max_ms = r
        .percentiles
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(0.001f64, f64::max);
    let max_x = 6.0;
    let _ = writeln!(
        s,
        r#"<text x="{M}" y="{}">latency (ms) by percentile</text>"#,
        top - 8.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{M}" y="{top}" width="{}" height="{H}" fill="none" stroke="gray"/>"#,
        W - 2.0 * M
    );
    for (label, p) in [
        ("0", 0.0),
        ("90", 90.0),
        ("99", 99.0),
        ("99.9", 99.9),
        ("99.99", 99.99),
        ("99.999", 99.999),
        ("99.9999", 99.9999),
    ] {
        let x = M + nines(p) / max_x * (W - 2.0 * M);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            top + H + 15.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{max_ms:.1}</text>"#,
        M - 4.0,
        top + 10.0
    );
    for (i, (cmd, pts)) in r.percentiles.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = pts
            .iter()
            .map(|(p, ms)| {
                format!(
                    "{:.1},{:.1}",
                    M + nines(*p) / max_x * (W - 2.0 * M),
                    top + H - ms / max_ms * H
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{cmd}</text>"#,
            M + 10.0,
            top + 20.0 + 15.0 * i as f64
        );
    }

    // Throughput over time.
    let top = 2.0 * M + H;
    let max_rate = r.timeline.iter().copied().max().unwrap_or(1).max(1) as f64;
    let _ = writeln!(
        s,
        r#"<text x="{M}" y="{}">completions per second</text>"#,
        top - 8.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{M}" y="{top}" width="{}" height="{H}" fill="none" stroke="gray"/>"#,
        W - 2.0 * M
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{max_rate:.0}</text>"#,
        M - 4.0,
        top + 10.0
    );
    let n = r.timeline.len().max(1) as f64;
    let points: Vec<String> = r
        .timeline
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{:.1},{:.1}",
                M + (i as f64 + 0.5) / n * (W - 2.0 * M),
                top + H - *c as f64 / max_rate * H
            )
        })
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
        COLORS[0],
        points.join(" ")
    );
    // Errors per second, on the same scale, as red bars (a failover's dip shows its cost).
    for (i, e) in r.error_timeline.iter().enumerate().filter(|(_, e)| **e > 0) {
        let h = (*e as f64 / max_rate * H).clamp(1.0, H);
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="red" opacity="0.6"/>"#,
            M + i as f64 / n * (W - 2.0 * M),
            top + H - h,
            ((W - 2.0 * M) / n).max(1.0)
        );
    }
    if r.error_timeline.iter().any(|e| *e > 0) {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="red">errors per second</text>"#,
            M + 10.0,
            top + 20.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{} s</text>"#,
        W - M,
        top + H + 15.0,
        r.timeline.len()
    );
    s.push_str("</svg>\n");
    s
}
