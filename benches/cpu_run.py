# Runs a command and, when it has exited, writes to OUT the CPU seconds (user + system) it
# and this wrapper used, on the same clock as benches/tree_cpu.py: reading tree_cpu.py on
# this wrapper's PID while the command runs, then OUT after, gives the command's CPU time
# over that window. Exits with the command's status.
# usage: cpu_run.py OUT COMMAND [ARG...]
import os
import subprocess
import sys

code = subprocess.call(sys.argv[2:])
t = os.times()
with open(sys.argv[1], "w") as f:
    f.write(f"{t.user + t.system + t.children_user + t.children_system:.3f}\n")
sys.exit(code)
