#!/usr/bin/env python3
"""Crash harness for raidfs: kill -9 the daemon at random moments under a
writer workload, remount, and check that nothing acknowledged was lost and
that parity agrees with data.

Each round:
  1. mount the array (foreground daemon, auto_unmount);
  2. a writer process does seeded random pwrites (some extending, some
     overwriting, some truncating) to a few files and fsyncs now and then,
     logging every write before it starts and every fsync after it returns;
  3. after a random delay the daemon gets SIGKILL;
  4. remount (the write-intent log is resynced before the mount appears);
  5. every file is checked against the writer's log: a byte written before
     the last fsync of its file must hold exactly that value; a byte written
     after it may hold the old or any newer value (chunk-granular mix);
  6. unmount, `raidctl check` must report clean (exit 0);
  7. mount without one member (RAID 5) or two (RAID 6), chosen at random,
     and every file must read back byte-identical to step 5 — parity was
     consistent, no write hole.

With --workload namespace the writer churns the namespace instead (create,
unlink, rename, link, symlink, mkdir, rmdir; see namespace.py): after each
kill the array must come back clean, with the tree exactly what the
acknowledged operations made it, the one in flight done or not as a unit.

Usage: tools/crash/harness.py --level 5 --rounds 200 [--members 5] [--seed N] [--workload data|namespace]
Exit status 0 when every round passed. Prints 'N passed, N failed' at the end.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bin_dir(config):
    env = os.environ.get("RAIDFS_BIN_DIR")
    if env:
        return env
    out = subprocess.run(["swift", "build", "-c", config, "--show-bin-path"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def is_mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def payload(seed, n):
    return random.Random(seed).randbytes(n)


class Array:
    def __init__(self, bindir, work, level, members, chunk):
        self.bin = bindir
        self.work = work
        self.mnt = os.path.join(work, "mnt")
        self.dirs = [os.path.join(work, f"d{i}") for i in range(members)]
        self.proc = None
        self.log = open(os.path.join(work, "raidfs.log"), "ab")
        for d in self.dirs + [self.mnt]:
            os.makedirs(d, exist_ok=True)
        subprocess.run([f"{bindir}/raidctl", "create", "--level", str(level), "--chunk", chunk] + self.dirs,
                       check=True, capture_output=True)

    def mount(self, dirs=None, extra=()):
        opts = ",".join(["auto_unmount"] + list(extra))
        self.proc = subprocess.Popen([f"{self.bin}/raidfs", ":".join(dirs or self.dirs), self.mnt, "-f", "-o", opts],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise RuntimeError(f"raidfs exited {self.proc.returncode}; see {self.log.name}")
            if time.time() > deadline:
                raise RuntimeError("mount did not appear")
            time.sleep(0.02)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        # auto_unmount's helper detaches the mount; make sure it is gone.
        for _ in range(100):
            if not is_mounted(self.mnt):
                return
            time.sleep(0.02)
        subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)

    def unmount(self):
        if is_mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def check(self):
        return subprocess.run([f"{self.bin}/raidctl", "check"] + self.dirs, capture_output=True, text=True)

    def status_problem(self):
        """None when `raidctl status` says clean (exit 0); else what it said."""
        os.stat(self.mnt)   # waits for the daemon's INIT, where the control socket starts
        deadline = time.time() + 20
        while True:
            r = subprocess.run([f"{self.bin}/raidctl", "status", self.mnt], capture_output=True, text=True)
            if "control socket" not in r.stderr or time.time() > deadline:
                break
            time.sleep(0.05)
        if r.returncode == 0:
            return None
        return f"array not clean after remount (status exit {r.returncode}):\n{r.stdout[-1500:]}{r.stderr[-500:]}"

    def print_log_tail(self):
        try:
            with open(os.path.join(self.work, "raidfs.log"), "rb") as f:
                print("raidfs.log (tail):\n" + f.read()[-3000:].decode(errors="replace"), flush=True)
        except OSError:
            pass


def writer(mnt, logpath, seed, files, max_size, fsync_fraction):
    """Child process: write until the mount dies. Log lines:
    W file offset length seed   (before the pwrite)
    T file size                 (before an ftruncate)
    S file                      (after fsync returned)"""
    rng = random.Random(seed)
    log = open(logpath, "w", buffering=1)
    fds = {}
    try:
        for i in range(files):
            fds[i] = os.open(os.path.join(mnt, f"f{i}"), os.O_CREAT | os.O_RDWR, 0o644)
            log.write(f"C {i}\n")
        sizes = {i: 0 for i in range(files)}
        n = 0
        while True:
            n += 1
            f = rng.randrange(files)
            r = rng.random()
            if r < 0.05:
                size = rng.randrange(max_size)
                log.write(f"T {f} {size}\n")
                os.ftruncate(fds[f], size)
                sizes[f] = size
            elif r < 0.05 + fsync_fraction:
                os.fsync(fds[f])
                log.write(f"S {f}\n")
            else:
                off = rng.randrange(0, max(1, min(max_size, sizes[f] + 65536)))
                ln = rng.choice([1, 100, 4096, 20000, 65536, 200000])
                ln = max(1, min(ln, max_size - off))
                s = rng.randrange(1 << 30)
                log.write(f"W {f} {off} {ln} {s}\n")
                os.pwrite(fds[f], payload(s, ln), off)
                sizes[f] = max(sizes[f], off + ln)
    except OSError:
        pass
    os._exit(0)


def expected_state(logpath, files):
    """Replays the writer's log. Returns per file: durable bytes, and the
    list of operations after the last fsync (which may or may not have landed)."""
    durable = {i: bytearray() for i in range(files)}
    pending = {i: [] for i in range(files)}
    created = set()
    with open(logpath) as f:
        lines = f.read().split("\n")
    for line in lines:
        if not line:
            continue
        p = line.split()
        if len(p) < 2:
            continue  # a torn last line: the op never started
        fi = int(p[1])
        if p[0] == "C":
            created.add(fi)
        elif p[0] == "W" and len(p) == 5:
            pending[fi].append(("W", int(p[2]), int(p[3]), int(p[4])))
        elif p[0] == "T" and len(p) == 3:
            pending[fi].append(("T", int(p[2])))
        elif p[0] == "S":
            for op in pending[fi]:
                apply(durable[fi], op)
            pending[fi] = []
    return durable, pending, created


def apply(buf, op):
    if op[0] == "W":
        _, off, ln, s = op
        if len(buf) < off + ln:
            buf.extend(bytes(off + ln - len(buf)))
        buf[off:off + ln] = payload(s, ln)
    else:
        size = op[1]
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))


def verify(actual, durable, ops):
    """Every byte must be explainable: durable value, or the value of some
    operation after the last fsync (a truncate that may have run makes
    zeros or a cut possible)."""
    # Candidate values per byte: start from durable, add every pending op's effect.
    maxlen = len(durable)
    for op in ops:
        if op[0] == "W":
            maxlen = max(maxlen, op[1] + op[2])
        else:
            maxlen = max(maxlen, op[1])
    if len(actual) > maxlen:
        return f"size {len(actual)} larger than any write could make it ({maxlen})"
    if not ops:
        if bytes(actual) != bytes(durable):
            i = next((k for k in range(min(len(actual), len(durable))) if actual[k] != durable[k]), min(len(actual), len(durable)))
            return f"fsync'ed content differs at byte {i} (size {len(actual)} vs {len(durable)})"
        return None
    truncated = any(op[0] == "T" for op in ops)
    written = {}
    for op in ops:
        if op[0] == "W":
            data = payload(op[3], op[2])
            for k in range(op[2]):
                written.setdefault(op[1] + k, set()).add(data[k])
    min_size = len(durable)
    if truncated:
        min_size = 0
    if len(actual) < min_size:
        return f"size {len(actual)} below the fsync'ed size {min_size}"
    for k in range(len(actual)):
        a = actual[k]
        if k < len(durable) and a == durable[k]:
            continue
        if a in written.get(k, ()):
            continue
        if a == 0 and (truncated or k >= len(durable)):
            continue
        return f"byte {k} is {a}: neither the fsync'ed value nor any later write"
    return None


def read_files(mnt, files, created):
    out = {}
    for i in range(files):
        p = os.path.join(mnt, f"f{i}")
        if os.path.exists(p):
            with open(p, "rb") as f:
                out[i] = f.read()
        elif i in created:
            out[i] = None
    return out


def reap(pid, seconds=20):
    """Waits for a workload child that should end once the mount is gone;
    kills it if it does not (it must never go on writing to the bare
    mount point)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def run_namespace(args, bindir, members):
    """Rounds of namespace churn killed at random; see namespace.py."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import namespace as ns
    rng = random.Random(args.seed)
    passed = failed = 0
    work = tempfile.mkdtemp(prefix=f"raidfs-nscrash-r{args.level}-")
    arr = Array(bindir, work, args.level, members, args.chunk)
    model = ns.Model()
    problem = None

    try:
        arr.mount(extra=args.mount_option)
        for d in ["d0", "d1", "d0/e"]:
            os.mkdir(os.path.join(arr.mnt, d))
        for rnd in range(args.rounds):
            problem = None
            # Keep the churn's directories there (a rename or rmdir may have taken them).
            for d in ["d0", "d1", "d0/e"]:
                full = os.path.join(arr.mnt, d)
                if model.tree.get(d) == ("d",):
                    continue
                if os.path.dirname(d) and model.tree.get(os.path.dirname(d)) != ("d",):
                    continue
                if d in model.tree:
                    shutil.rmtree(full) if model.tree[d] == ("d",) else os.unlink(full)
                    for k in [k for k in model.tree if k == d or k.startswith(d + "/")]:
                        del model.tree[k]
                os.mkdir(full)
                model.tree[d] = ("d",)
            wlog = os.path.join(work, f"churn-{rnd}.log")
            pid = os.fork()
            if pid == 0:
                ns.churn(arr.mnt, wlog, rng.randrange(1 << 30), (rnd + 1) * 1_000_000)
            time.sleep(rng.uniform(0.05, 1.0))
            arr.kill()
            reap(pid)
            model, inflight, problem = ns.replay(wlog, model)
            try:
                if not problem:
                    arr.mount(extra=args.mount_option)
                    problem = arr.status_problem()
                if not problem:
                    tree, data = ns.observe(arr.mnt)
                    problem, model = ns.check_round(model, inflight, tree, data)
                    if not problem and inflight and inflight[0] == "create" and model.tree.get(inflight[1]) == ("f", int(inflight[2])):
                        got = data.get(inflight[1])
                        if got != ns.content(int(inflight[2])):
                            os.unlink(os.path.join(arr.mnt, inflight[1]))   # cut short: start it over
                            del model.tree[inflight[1]]
                if not problem and ((rnd + 1) % 10 == 0 or rnd + 1 == args.rounds):
                    arr.unmount()
                    chk = arr.check()
                    if chk.returncode != 0:
                        problem = f"raidctl check exit {chk.returncode}: {chk.stdout.strip()[-500:]}"
                    arr.mount(extra=args.mount_option)
            except Exception as e:  # noqa: BLE001 - report and count
                problem = f"{type(e).__name__}: {e}"
            if problem:
                failed += 1
                print(f"round {rnd}: FAIL {problem}", flush=True)
                arr.print_log_tail()
                break   # the model no longer describes the array
            passed += 1
            if (rnd + 1) % 10 == 0:
                print(f"round {rnd + 1}: {passed} passed, {failed} failed ({len(model.tree)} entries)", flush=True)
    finally:
        arr.unmount()
        if not args.keep or failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        elif failed:
            print(f"kept {work}")
    print(f"RAID {args.level} namespace crash harness: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--level", type=int, default=5)
    ap.add_argument("--members", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--max-size", type=int, default=3 << 20)
    ap.add_argument("--chunk", default="16K")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fsync-fraction", type=float, default=0.05,
                    help="share of operations that are fsyncs (fewer fsyncs: more crashes land mid-stripe)")
    ap.add_argument("--config", default="release")
    ap.add_argument("--keep", action="store_true", help="keep the work directory of a failed round")
    ap.add_argument("--mount-option", action="append", default=[],
                    help="extra -o option for the crashing mounts (e.g. intent_log=off, to see the harness catch a write hole)")
    ap.add_argument("--workload", choices=["data", "namespace"], default="data",
                    help="data: pwrite/truncate/fsync on a few files; namespace: create/unlink/rename/link/mkdir/rmdir/symlink churn")
    args = ap.parse_args()
    members = args.members or {1: 3, 5: 5, 6: 6}[args.level]
    redundancy = {1: members - 1, 5: 1, 6: 2}[args.level]
    bindir = bin_dir(args.config)
    if args.workload == "namespace":
        return run_namespace(args, bindir, members)
    rng = random.Random(args.seed)
    passed = failed = 0
    work = tempfile.mkdtemp(prefix=f"raidfs-crash-r{args.level}-")
    arr = Array(bindir, work, args.level, members, args.chunk)
    try:
        for rnd in range(args.rounds):
            wlog = os.path.join(work, f"writer-{rnd}.log")
            arr.mount(extra=args.mount_option)
            for i in range(args.files):  # a fresh start each round
                p = os.path.join(arr.mnt, f"f{i}")
                if os.path.exists(p):
                    os.unlink(p)
            wseed = rng.randrange(1 << 30)
            pid = os.fork()
            if pid == 0:
                writer(arr.mnt, wlog, wseed, args.files, args.max_size, args.fsync_fraction)
            time.sleep(rng.uniform(0.05, 1.5))
            arr.kill()
            reap(pid)
            durable, pending, created = expected_state(wlog, args.files)
            problem = None
            try:
                arr.mount(extra=args.mount_option)
                state = read_files(arr.mnt, args.files, created)
                for i, data in state.items():
                    if data is None:
                        problem = f"f{i} vanished after it was created"
                        break
                    why = verify(data, durable[i], pending[i])
                    if why:
                        problem = f"f{i}: {why}"
                        break
                arr.unmount()
                if not problem:
                    chk = arr.check()
                    if chk.returncode != 0:
                        problem = f"raidctl check exit {chk.returncode}: {chk.stdout.strip()[-500:]}"
                if not problem:
                    lost = rng.sample(range(members), redundancy if args.level != 1 else 1)
                    arr.mount([d for k, d in enumerate(arr.dirs) if k not in lost])
                    degraded = read_files(arr.mnt, args.files, created)
                    arr.unmount()
                    for i in state:
                        if degraded.get(i) != state[i]:
                            problem = f"f{i} differs when members {lost} are missing (write hole)"
                            break
                    # Bring the left-out members back: recreate the array
                    # state by remounting all (they are stale now), so
                    # start the next round from a fresh array instead.
                    arr.unmount()
                    shutil.rmtree(work)
                    os.makedirs(work)
                    arr = Array(bindir, work, args.level, members, args.chunk)
            except Exception as e:  # noqa: BLE001 - report and count
                problem = f"{type(e).__name__}: {e}"
                arr.unmount()
            if problem:
                failed += 1
                print(f"round {rnd} (writer seed {wseed}): FAIL {problem}", flush=True)
                arr.print_log_tail()
                if args.keep:
                    print(f"kept {work}")
                    return 1
            else:
                passed += 1
                if (rnd + 1) % 10 == 0:
                    print(f"round {rnd + 1}: {passed} passed, {failed} failed", flush=True)
    finally:
        arr.unmount()
        if not args.keep or failed == 0:
            shutil.rmtree(work, ignore_errors=True)
    print(f"RAID {args.level} crash harness: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
