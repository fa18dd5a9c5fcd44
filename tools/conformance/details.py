#!/usr/bin/env python3
"""What programs rely on, measured through a real mount, each as a count:

  timestamps  ROUNDS appends and ROUNDS open(O_TRUNC)s, each a second after
              the last change: how many moved mtime (make, rsync's quick
              check and backups skip a file whose mtime stays);
  control     ROUNDS of `raidfs MEMBERS MNT; raidctl status MNT` (no -f):
              how many found the control socket answering;
  huge        truncate to 999,999,999,999,999 bytes and back to 0: the time
              of each and the daemon's largest RSS meanwhile (EFBIG where
              the members' host cannot hold such a file, as ext4 answers);
  blocks      du of a 10 GiB sparse file holding 1 MiB.

Usage: tools/conformance/details.py [--level 5|6] [--rounds N] [--backing DIR] [CHECK...]
Prints one line per check and 'N passed, N failed' last.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bin_dir():
    env = os.environ.get("RAIDFS_BIN_DIR")
    if env:
        return env
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, capture_output=True)
    return subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


def is_mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def daemons(mnt):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if len(args) >= 3 and args[0].endswith(b"/raidfs") and args[2] == mnt.encode():
            found.append(int(pid))
    return found


class Array:
    def __init__(self, bindir, work, level):
        self.bin = bindir
        self.mnt = os.path.join(work, "mnt")
        n = 4 if level == 5 else 6
        self.dirs = [os.path.join(work, f"d{i}") for i in range(n)]
        for d in self.dirs + [self.mnt]:
            os.makedirs(d)
        subprocess.run([f"{bindir}/raidctl", "create", "--level", str(level)] + self.dirs, check=True, capture_output=True)

    def mount(self):
        """Detached (no -f): returns once raidfs has returned."""
        r = subprocess.run([f"{self.bin}/raidfs", ":".join(self.dirs), self.mnt], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"raidfs: {r.stderr.strip()}")
        return r

    def unmount(self):
        if is_mounted(self.mnt):
            if subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True).returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
        deadline = time.time() + 30
        while daemons(self.mnt) and time.time() < deadline:
            time.sleep(0.02)
        for pid in daemons(self.mnt):
            os.kill(pid, 9)

    def pid(self):
        d = daemons(self.mnt)
        return d[0] if d else None


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def check_timestamps(a, rounds):
    a.mount()
    try:
        p = os.path.join(a.mnt, "f")
        with open(p, "wb") as f:
            f.write(b"x" * 10000)
        moved = {"append": 0, "O_TRUNC": 0}
        for i in range(rounds):
            for what in ("append", "O_TRUNC"):
                before = os.stat(p).st_mtime_ns
                time.sleep(1)
                if what == "append":
                    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
                    os.write(fd, b"more" * (i + 1))
                else:
                    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
                os.close(fd)
                if os.stat(p).st_mtime_ns > before:
                    moved[what] += 1
            # The next round appends to data again.
            with open(p, "ab") as f:
                f.write(b"y" * (4096 * (i % 7) + 1))
        line = f"{moved['append']} of {rounds} appends and {moved['O_TRUNC']} of {rounds} O_TRUNC opens moved mtime"
        return moved["append"] == rounds and moved["O_TRUNC"] == rounds, line
    finally:
        a.unmount()


def check_control(a, rounds):
    ok = 0
    failures = []
    for i in range(rounds):
        a.mount()
        r = subprocess.run([f"{a.bin}/raidctl", "status", a.mnt], capture_output=True, text=True)
        if r.returncode == 0:
            ok += 1
        else:
            failures.append(f"round {i}: exit {r.returncode}: {r.stderr.strip()}")
        a.unmount()
    for f in failures[:5]:
        print("  " + f)
    return ok == rounds, f"{ok} of {rounds} 'raidfs …; raidctl status …' found the daemon answering"


def check_huge(a):
    a.mount()
    try:
        pid = a.pid()
        p = os.path.join(a.mnt, "f")
        open(p, "w").close()
        peak = [rss_kib(pid)]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(pid))
                time.sleep(0.005)
        t = threading.Thread(target=sample)
        t.start()
        times = []
        outcomes = []
        for size in (999_999_999_999_999, 0):
            start = time.perf_counter()
            r = subprocess.run(["truncate", "-s", str(size), p], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            outcomes.append("ok" if r.returncode == 0 else r.stderr.strip().split(": ")[-1])
        stop.set()
        t.join()
        peak[0] = max(peak[0], rss_kib(pid))
        line = (f"truncate -s 999999999999999: {outcomes[0]} in {times[0] * 1000:.1f} ms; truncate -s 0: "
                f"{outcomes[1]} in {times[1] * 1000:.1f} ms; daemon RSS at most {peak[0] / 1024:.1f} MiB")
        return max(times) < 1 and peak[0] < 64 * 1024, line
    finally:
        a.unmount()


def check_blocks(a):
    a.mount()
    try:
        p = os.path.join(a.mnt, "sparse")
        fd = os.open(p, os.O_CREAT | os.O_RDWR)
        os.ftruncate(fd, 10 << 30)
        os.pwrite(fd, os.urandom(1 << 20), 5 << 30)
        os.close(fd)
        du = subprocess.run(["du", "-k", p], capture_output=True, text=True).stdout.split()[0]
        apparent = subprocess.run(["du", "-k", "--apparent-size", p], capture_output=True, text=True).stdout.split()[0]
        return 900 <= int(du) <= 1600, f"du of a 10 GiB sparse file holding 1 MiB: {du} KiB (apparent {apparent} KiB)"
    finally:
        a.unmount()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--level", type=int, choices=[5, 6], default=5)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--backing", help="where the member directories go (default: a temporary directory)")
    ap.add_argument("checks", nargs="*", default=["timestamps", "control", "huge", "blocks"])
    a = ap.parse_args()
    bindir = bin_dir()
    results = []
    for c in a.checks:
        work = tempfile.mkdtemp(prefix=f"raidfs-details-{c}-", dir=a.backing)
        arr = Array(bindir, work, a.level)
        try:
            ok, line = {"timestamps": lambda: check_timestamps(arr, a.rounds),
                        "control": lambda: check_control(arr, a.rounds),
                        "huge": lambda: check_huge(arr),
                        "blocks": lambda: check_blocks(arr)}[c]()
        finally:
            arr.unmount()
            shutil.rmtree(work, ignore_errors=True)
        print(f"details: RAID {a.level}: {c}: {'ok' if ok else 'FAILED'}: {line}", flush=True)
        results.append(ok)
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
