# Markdown tables for the comparison scripts (benches/*-compare.sh, benches/compare.sh).
#
#   table.py rows ROWS.tsv --unit messages --per message --count delivered \
#       --vs smtp-sink --vs dovecot-lmtp [--cpu-vs dovecot-lmtp] [--key connections]
#
# ROWS.tsv holds benches/loadgen_row.py's rows. Each ratio compares a row with the baseline
# row of the same key (the same load) measured in the same run: "vs X" is the rate over X's
# rate; "per server CPU-s vs X" is X's server CPU per request over the row's.
#
#   table.py commands DIR LABEL-KEY... --commands login,select,...
#
# prints p50 / p99 ms per command from the JSON reports DIR/LABEL-KEY.json.
import argparse
import json
import sys


def ratio(a, b):
    try:
        return f"{float(a) / float(b):.2f}×" if float(b) > 0 else "–"
    except ValueError:
        return "–"


def rows(a):
    data = []
    for line in open(a.rows):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 9:
            data.append(dict(zip(
                ["label", "key", "rate", "p50", "p99", "count", "errors", "cpu", "client"], f)))
    base = {(r["label"], r["key"]): r for r in data}
    has_cpu = any(r["cpu"] != "-" for r in data)
    head = ["server"] + ([a.key] if a.key else []) + [f"{a.unit}/s"]
    head += [f"vs {v}" for v in a.vs] + ["p50 ms", "p99 ms", a.count, "errors"]
    if has_cpu:
        head += [f"server CPU µs/{a.per}"]
        head += [f"{a.unit} per server CPU-s vs {v}" for v in a.cpu_vs]
    head += [f"client CPU µs/{a.per}"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for r in data:
        cells = [r["label"]] + ([r["key"]] if a.key else []) + [r["rate"]]
        for v in a.vs:
            b = base.get((v, r["key"]))
            cells.append(ratio(r["rate"], b["rate"]) if b else "–")
        cells += [r["p50"], r["p99"], r["count"], r["errors"]]
        if has_cpu:
            cells.append(r["cpu"].replace("-", "–"))
            for v in a.cpu_vs:
                b = base.get((v, r["key"]))
                cells.append(ratio(b["cpu"], r["cpu"]) if b else "–")
        cells.append(r["client"].replace("-", "–"))
        print("| " + " | ".join(cells) + " |")


def commands(a):
    reports = {r: json.load(open(f"{a.dir}/{r}.json")) for r in a.runs}
    print("| command | " + " | ".join(" ×".join(r.rsplit("-", 1)) for r in a.runs) + " |")
    print("|---|" + "---:|" * len(a.runs))
    for k in a.commands.split(","):
        cells = []
        for r in a.runs:
            st = reports[r]["commands"].get(k)
            cells.append(f"{st['p50_ms']:.2f} / {st['p99_ms']:.2f}" if st else "–")
        if any(c != "–" for c in cells):
            print(f"| {k} | " + " | ".join(cells) + " |")
    errs = {r: reports[r]["errors"] for r in a.runs if reports[r]["errors"]}
    if errs:
        print("\nErrors:", json.dumps(errs))


p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="mode", required=True)
r = sub.add_parser("rows")
r.add_argument("rows")
r.add_argument("--unit", required=True)
r.add_argument("--per", required=True)
r.add_argument("--count", required=True)
r.add_argument("--key")
r.add_argument("--vs", action="append", default=[])
r.add_argument("--cpu-vs", action="append", default=[])
c = sub.add_parser("commands")
c.add_argument("dir")
c.add_argument("runs", nargs="+")
c.add_argument("--commands", required=True)
a = p.parse_args()
(rows if a.mode == "rows" else commands)(a)
sys.stdout.flush()
