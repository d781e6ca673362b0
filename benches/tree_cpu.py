# Prints the CPU seconds (user + system) a process tree has used so far: the root and every
# live descendant, each with what its reaped children used (cutime/cstime), so processes
# that already exited (Dovecot's per-session workers) are counted once. With several PIDs,
# one figure per tree from one pass over /proc, space-separated. With --after, it first
# sleeps that long: start it (niced) with the run, so that it reads at the end of a warm-up
# without having to start up on a saturated machine.
# usage: tree_cpu.py [--after SECONDS] PID...
import os
import sys
import time

args = sys.argv[1:]
if args and args[0] == "--after":
    start = time.monotonic()
    delay = float(args[1])
    args = args[2:]
    time.sleep(max(0.0, delay - (time.monotonic() - start)))

hz = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # fields after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(rest[1]), sum(int(x) for x in rest[11:15])


procs = {}
children = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            procs[int(p)] = stat(p)
        except OSError:
            pass
for p, (pp, _) in procs.items():
    children.setdefault(pp, []).append(p)


def tree(root):
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        if p in procs:
            total += procs[p][1]
            todo.extend(children.get(p, []))
    return total


print(" ".join(f"{tree(int(p)) / hz:.3f}" for p in args))
