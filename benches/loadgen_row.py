# Prints one row (label, rate, p50 ms, p99 ms, count, errors) of a ringmail-loadgen report,
# tab-separated, for the comparison scripts.
import json, sys
# usage: lgrow.py REPORT.json LABEL COMMAND -> "label\trate\tp50\tp99\tcount\terrors"
r = json.load(open(sys.argv[1]))
c = r["commands"].get(sys.argv[3], {"rate": 0, "p50_ms": 0, "p99_ms": 0, "count": 0})
print(f'{sys.argv[2]}\t{c["rate"]:.0f}\t{c["p50_ms"]:.2f}\t{c["p99_ms"]:.2f}\t{c["count"]}\t{sum(r["errors"].values())}')
