#!/usr/bin/env python3
"""One big mailbox: fill it by pipelined APPEND (LITERAL+) to each size in turn, and after
each size time the commands whose cost must not grow faster than the mailbox: SELECT,
STORE 1:* +FLAGS.SILENT (\\Seen) (then -FLAGS back), UID SEARCH UNSEEN, SEARCH SUBJECT,
FETCH 1:* (FLAGS). Run by benches/big-mailbox.sh against ringmail and Dovecot in turn.

    big_mailbox.py PORT USER PASSWORD SIZES(comma list) REPEAT  -> JSON lines on stdout

With CPU_OF set (a regular expression), the server's CPU time is measured too: every
thread of the processes whose command line (NULs as spaces) matches it (and, with
CPU_PARENT, whose parent is that PID), from /proc/PID/task/TID/schedstat (nanoseconds),
around each timed command and the fill; CPU_SKIP_THREADS (a regular expression on a
thread's name) leaves background threads out of the commands' figures (the fill counts all).
"""
import json
import os
import re
import socket
import statistics
import sys
import time

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sizes = [int(x) for x in sys.argv[4].split(",")]
repeat = int(sys.argv[5])

WORDS = ("quarterly report meeting invoice holiday project lunch review budget "
         "release party travel contract update weekly notes draft plan").split()


def message(n: int) -> bytes:
    subject = " ".join(WORDS[(n * 7 + i * 3) % len(WORDS)] for i in range(4))
    body = ("Line %d of a generated message, some words to carry.\r\n" % n) * 40
    return (
        "From: Sender %d <sender%d@example.org>\r\nTo: user@example.org\r\n"
        "Subject: %s %d\r\nMessage-ID: <%d@bench>\r\nDate: Sun, 6 Dec 2026 12:00:00 +0000\r\n\r\n%s"
        % (n % 97, n % 97, subject, n, n, body)
    ).encode()


def server_pids():
    pattern = os.environ.get("CPU_OF")
    if not pattern:
        return []
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if not re.search(pattern, cmdline):
            continue
        parent = os.environ.get("CPU_PARENT")
        if parent:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    # pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
            if ppid != parent:
                continue
        pids.append(pid)
    return pids


def cpu_ns(pids, skip=None) -> int:
    if not pids:
        return 0
    # A running thread's schedstat is brought up to date when it is switched out: let the
    # server go idle first, so a command's CPU is not counted with the next one's.
    time.sleep(0.003)
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                if skip:
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        if re.search(skip, f.read()):
                            continue
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.n = 0
        self.cmd(b"LOGIN %s %s" % (user.encode(), password.encode()))

    def tag(self) -> bytes:
        self.n += 1
        return b"t%d" % self.n

    def wait(self, tag: bytes) -> bytes:
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("connection closed")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise SystemExit("failed: %r" % line)
                return line
            # A literal in a response: skip its bytes.
            if line.rstrip().endswith(b"}") and b"{" in line:
                n = int(line.rstrip()[line.rstrip().rindex(b"{") + 1:-1])
                self.f.read(n)

    def cmd(self, c: bytes) -> float:
        t = self.tag()
        start = time.perf_counter()
        self.s.sendall(t + b" " + c + b"\r\n")
        self.wait(t)
        return (time.perf_counter() - start) * 1000

    def timed(self, c: bytes, cpu: list) -> float:
        """`cmd`, adding the server's CPU milliseconds for it to `cpu`."""
        skip = os.environ.get("CPU_SKIP_THREADS")
        before = cpu_ns(PIDS, skip)
        ms = self.cmd(c)
        cpu.append((cpu_ns(PIDS, skip) - before) / 1e6)
        return ms

    def fill(self, have: int, want: int):
        """APPENDs messages have..want, pipelined in windows of 500."""
        n = have
        while n < want:
            tags = []
            buf = bytearray()
            for _ in range(min(500, want - n)):
                m = message(n)
                t = self.tag()
                buf += t + b" APPEND INBOX {%d+}\r\n" % len(m) + m + b"\r\n"
                tags.append(t)
                n += 1
            self.s.sendall(buf)
            for t in tags:
                self.wait(t)


c = Conn()
# The server's processes once logged in (Dovecot's imap process is per connection).
PIDS = server_pids()
have = 0
for size in sizes:
    t0 = time.perf_counter()
    cpu0 = cpu_ns(PIDS)
    c.fill(have, size)
    fill_rate = (size - have) / (time.perf_counter() - t0)
    fill_cpu_us = (cpu_ns(PIDS) - cpu0) / 1e3 / (size - have)
    have = size
    row = {"size": size, "fill_per_s": round(fill_rate), "fill_cpu_us": round(fill_cpu_us, 1)}
    names = ("select", "store", "search_unseen", "search_subject", "fetch_flags")
    timings = {k: [] for k in names}
    cpu = {k: [] for k in names}
    for _ in range(repeat):
        timings["select"].append(c.timed(b"SELECT INBOX", cpu["select"]))
        timings["store"].append(c.timed(b"STORE 1:* +FLAGS.SILENT (\\Seen)", cpu["store"]))
        c.cmd(b"STORE 1:* -FLAGS.SILENT (\\Seen)")
        c.cmd(b"STORE 1:100 +FLAGS.SILENT (\\Seen)")
        timings["search_unseen"].append(c.timed(b"UID SEARCH UNSEEN", cpu["search_unseen"]))
        timings["search_subject"].append(
            c.timed(b"SEARCH SUBJECT \"holiday project\"", cpu["search_subject"])
        )
        timings["fetch_flags"].append(c.timed(b"FETCH 1:* (FLAGS)", cpu["fetch_flags"]))
        c.cmd(b"STORE 1:100 -FLAGS.SILENT (\\Seen)")
    for k, v in timings.items():
        row[k] = round(statistics.median(v), 2)
        row[k + "_cpu"] = round(statistics.median(cpu[k]), 2) if PIDS else None
    print(json.dumps(row), flush=True)
c.cmd(b"LOGOUT")
