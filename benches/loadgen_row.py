# Prints one row of a ringmail-loadgen report for benches/table.py, tab-separated: label,
# key (connections, or "-"), rate, p50 ms, p99 ms, count, errors, then the server's and the
# client's CPU µs per counted request, each from two readings in CPU seconds (before and
# after the measured window), or "-".
# usage: loadgen_row.py REPORT.json LABEL KEY COMMAND [SERVER_BEFORE SERVER_AFTER
#        [CLIENT_BEFORE CLIENT_AFTER]]
import json
import sys

r = json.load(open(sys.argv[1]))
label, key, command = sys.argv[2:5]
c = r["commands"].get(command, {"rate": 0, "p50_ms": 0, "p99_ms": 0, "count": 0})


def per_request(before, after):
    return f"{(float(after) - float(before)) * 1e6 / max(c['count'], 1):.1f}"


readings = sys.argv[5:]
server = per_request(*readings[0:2]) if len(readings) >= 2 else "-"
client = per_request(*readings[2:4]) if len(readings) >= 4 else "-"
print("\t".join([
    label, key, f'{c["rate"]:.0f}', f'{c["p50_ms"]:.2f}', f'{c["p99_ms"]:.2f}', str(c["count"]),
    str(sum(r["errors"].values())), server, client,
]))
