# Prints the CPU seconds (user + system) a process tree has used so far: the root and every
# live descendant, each with what its reaped children used (cutime/cstime), so processes
# that already exited (Dovecot's per-session workers) are counted once.
# usage: tree_cpu.py PID
import os, sys

hz = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # fields after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(rest[1]), sum(int(x) for x in rest[11:15])


procs = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            procs[int(p)] = stat(p)
        except OSError:
            pass
root = int(sys.argv[1])
total, todo = 0, [root]
while todo:
    p = todo.pop()
    if p in procs:
        total += procs[p][1]
        todo.extend(c for c, (pp, _) in procs.items() if pp == p)
print(f"{total / hz:.3f}")
