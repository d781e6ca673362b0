# Prints criterion's last results as a Markdown table: per bench the median time per
# iteration, the throughput, and, in groups that have a `baseline_*` bench (measured on the
# same input in the same run), the time as a multiple of the baseline's.
#
#   python3 benches/criterion_table.py [GROUP_PREFIX...]    (default: every group)
#
# Reads target/criterion/*/*/new/{benchmark,estimates}.json (CARGO_TARGET_DIR honoured).
import glob
import json
import os
import sys

target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "target")
prefixes = sys.argv[1:]


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_rate(tp, ns):
    if not tp:
        return ""
    (kind, n), = tp.items()
    per_s = n * 1e9 / ns
    if kind == "Bytes":
        return f"{per_s / 2**30:.2f} GiB/s" if per_s >= 2**30 else f"{per_s / 2**20:.0f} MiB/s"
    return f"{per_s / 1e6:.2f} M/s" if per_s >= 1e6 else f"{per_s / 1e3:.0f} k/s"


groups = {}
for b in sorted(glob.glob(os.path.join(target, "criterion", "*", "*", "new", "benchmark.json"))):
    meta = json.load(open(b))
    group = meta["group_id"]
    if prefixes and not any(group.startswith(p) for p in prefixes):
        continue
    est = json.load(open(os.path.join(os.path.dirname(b), "estimates.json")))
    groups.setdefault(group, []).append(
        (meta["function_id"] or "", est["median"]["point_estimate"], meta.get("throughput")))

def order(group):
    hits = [i for i, p in enumerate(prefixes) if group.startswith(p)]
    return (hits[0] if hits else 0, group)


groups = dict(sorted(groups.items(), key=lambda g: order(g[0])))
print("| group | bench | median time | throughput | time vs baseline |")
print("|---|---|---:|---:|---:|")
for group, benches in groups.items():
    base = next((ns for name, ns, _ in benches if name.startswith("baseline")), None)
    # Baseline first, then the others in the order criterion ran them (by name here).
    benches.sort(key=lambda b: (not b[0].startswith("baseline"), b[0]))
    for name, ns, tp in benches:
        ratio = f"{ns / base:.2f}×" if base else ""
        print(f"| {group} | {name} | {fmt_time(ns)} | {fmt_rate(tp, ns)} | {ratio} |")
