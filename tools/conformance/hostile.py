#!/usr/bin/env python3
"""Hostile requests: random sequences of system calls with extreme
arguments, issued through a raidfs mount and, identically, on a tmpfs
directory; every result and errno is compared.

What it throws at both:
  - sizes and offsets near 2^63 and negative ones (pread, pwrite, truncate,
    ftruncate, fallocate in every mode, lseek with every whence);
  - huge and many extended attributes;
  - 255- and 256-byte names, paths near 4,095 bytes, deep trees;
  - one directory of many entries (--dir-entries, 100,000 by default);
  - thousands of open descriptors (--fds);
  - every combination of the open flags that matter;
  - operations on files and directories removed while open.

It records the raidfs daemon's largest RSS and the slowest request. A
difference from tmpfs that docs/compatibility.md or the README's limitations list as known (the largest file,
holes that SEEK_HOLE does not report, O_TMPFILE...) is counted apart.

Usage: tools/conformance/hostile.py [--level 5|6] [--ops N | --seconds S]
           [--seed N] [--dir-entries N] [--fds N] [--backing DIR]
Runs as root (it mounts a tmpfs for the reference). Exit status 0 when no
difference was unexplained, the daemon stayed under --rss-limit-mib and no
request took longer than --slowest-limit-ms (0: not checked). The last
line is 'N passed, N failed' over those checks.
"""
import argparse
import ctypes
import errno
import fcntl
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]

FALLOC_MODES = {"alloc": 0, "keep": 1, "punch": 3, "zero": 0x10, "zero-keep": 0x11, "collapse": 0x08, "insert": 0x20}
BIG = [0, 1, 4095, 4096, 65535, 1 << 20, (1 << 31) - 1, 1 << 32, 1 << 40, 1 << 44, 999_999_999_999_999,
       (1 << 62), (1 << 63) - 4096, (1 << 63) - 2, (1 << 63) - 1, -1, -4096, -(1 << 63)]
OPEN_FLAGS = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR]
OPEN_MODIFIERS = [os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_DIRECTORY, os.O_NOFOLLOW,
                  os.O_NONBLOCK, os.O_SYNC, os.O_DSYNC, os.O_NOATIME, os.O_DIRECT, os.O_PATH, os.O_CLOEXEC]


def bin_dir():
    env = os.environ.get("RAIDFS_BIN_DIR")
    if env:
        return env
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, capture_output=True)
    out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def is_mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def outcome(fn):
    """('ok', value) or ('err', errno name), and the seconds it took."""
    t = time.perf_counter()
    try:
        v = fn()
        r = ("ok", v)
    except OSError as e:
        r = ("err", errno.errorcode.get(e.errno, str(e.errno)))
    except (OverflowError, ValueError) as e:   # refused before any system call
        r = ("refused", type(e).__name__)
    return r, time.perf_counter() - t


def stat_view(st):
    """What both must agree on (not times, inode numbers, blocks or a directory's size)."""
    kind = stat.S_IFMT(st.st_mode)
    v = {"type": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if kind != stat.S_IFDIR:
        v["nlink"] = st.st_nlink
    if kind == stat.S_IFREG or kind == stat.S_IFLNK:
        v["size"] = st.st_size
    if kind in (stat.S_IFCHR, stat.S_IFBLK):
        v["rdev"] = st.st_rdev
    return v


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return 0


class Side:
    """One tree the operations run on: the raidfs mount or the tmpfs."""

    def __init__(self, root):
        self.root = root
        self.fds = {}   # handle -> fd

    def p(self, rel):
        return os.path.join(self.root, rel) if rel else self.root


class Known:
    """Differences from tmpfs docs/compatibility.md and the README's limitations list, by the
    operation and its two outcomes."""

    def __init__(self, largest):
        self.largest = largest

    def explain(self, op, args, raid, ref):
        name = op
        if name in ("lseek",) and args.get("whence") in (os.SEEK_DATA, os.SEEK_HOLE):
            return "SEEK_DATA/SEEK_HOLE see no holes"
        if name == "lseek" and args.get("directory"):
            return "lseek on a directory follows FUSE's rules"
        if (name == "fstat" and args.get("o_path") and raid[0] == ref[0] == "ok"
                and raid[1].get("nlink") == ref[1].get("nlink") == 0):
            # FUSE opens nothing for O_PATH: a file removed with no handle
            # open is gone from the members, and its node answers what it
            # last answered.
            return "O_PATH descriptor of a removed file"
        if name == "open" and args.get("flags", 0) & os.O_TMPFILE == os.O_TMPFILE:
            return "no O_TMPFILE"
        if name in ("setxattr",) and raid[0] == "err" and raid[1] in ("ENOSPC", "E2BIG") and ref[0] == "ok":
            return "members' xattr space"
        if name == "listxattr" and raid[0] == "ok" and ref[0] == "ok":
            return None
        return None


class Run:
    def __init__(self, a, bindir, work):
        self.a = a
        self.bin = bindir
        self.work = work
        self.rng = random.Random(a.seed)
        self.ops = 0
        self.divergences = []
        self.known = {}
        self.slowest = (0.0, "")
        self.rss_max_kib = 0
        self.proc = None
        self.raid = None
        self.ref = None
        self.handles = 0
        self.o_path = {}   # handle -> opened with O_PATH
        self.trace = open(a.trace, "w") if a.trace else None

    # -- setup ---------------------------------------------------------
    def setup(self):
        members = 4 if self.a.level == 5 else 6
        backing = self.a.backing or self.work
        self.dirs = [tempfile.mkdtemp(prefix=f"hostile-d{i}-", dir=backing) for i in range(members)]
        self.mnt = os.path.join(self.work, "mnt")
        self.tmpfs = os.path.join(self.work, "tmpfs")
        os.makedirs(self.mnt)
        os.makedirs(self.tmpfs)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=0755", "hostile-ref", self.tmpfs], check=True)
        subprocess.run([f"{self.bin}/raidctl", "create", "--level", str(self.a.level), "--chunk", "64K"] + self.dirs,
                       check=True, capture_output=True)
        self.log = open(os.path.join(self.work, "raidfs.log"), "ab")
        self.proc = subprocess.Popen([f"{self.bin}/raidfs", ":".join(self.dirs), self.mnt, "-f", "-o", "auto_unmount"],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"raidfs did not mount; see {self.log.name}")
            time.sleep(0.05)
        os.stat(self.mnt)   # waits for the kernel's INIT
        self.raid = Side(os.path.join(self.mnt, "t"))
        self.ref = Side(os.path.join(self.tmpfs, "t"))
        for s in (self.raid, self.ref):
            os.mkdir(s.root)
        self.raid_dev = os.stat(self.raid.root).st_dev
        self.ref_dev = os.stat(self.ref.root).st_dev
        assert self.raid_dev != self.ref_dev, "the mounts are not in place"
        self.largest = self.find_largest()

    def find_largest(self):
        """The largest file through the mount (a binary search of truncates)."""
        p = self.raid.p("probe")
        open(p, "w").close()
        lo, hi = 0, (1 << 63) - 1
        while lo < hi:
            mid = lo + (hi - lo) // 2 + 1
            try:
                os.truncate(p, mid)
                lo = mid
            except OSError:
                hi = mid - 1
        os.unlink(p)
        return lo

    def teardown(self):
        for s in (self.raid, self.ref):
            if s:
                for fd in s.fds.values():
                    if fd is not None:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                s.fds.clear()
        if self.proc:
            if is_mounted(self.mnt):
                if subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True).returncode != 0:
                    subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if is_mounted(self.tmpfs):
            subprocess.run(["umount", "-l", self.tmpfs])
        for d in getattr(self, "dirs", []):
            shutil.rmtree(d, ignore_errors=True)

    # -- measurement ---------------------------------------------------
    def sample_rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.rss_max_kib = max(self.rss_max_kib, int(line.split()[1]))
        except OSError:
            pass

    def inside(self, rel):
        """`rel`, after checking that with its symlinks followed it stays
        inside both trees (stops the run otherwise)."""
        for s in (self.raid, self.ref):
            real = os.path.realpath(s.p(rel))
            if real != s.root and not real.startswith(s.root + "/"):
                raise RuntimeError(f"{rel!r} leads out of {s.root}: stopping before it changes the host")
        return rel

    def both(self, op, fn, reconcile=None, composite=False, **args):
        """Runs fn(side) on raidfs then on tmpfs; compares the outcomes. A
        known difference that leaves the two apart (tmpfs took a size
        raidfs refused) is undone on tmpfs by `reconcile`, so that what
        follows is compared from one state. A `composite` operation (a
        whole listing) is many requests: not timed as one."""
        raid, seconds = outcome(lambda: fn(self.raid))
        ref, _ = outcome(lambda: fn(self.ref))
        self.ops += 1
        if self.trace:
            self.trace.write(f"{self.ops} {op} {args} raidfs={str(raid)[:90]} tmpfs={str(ref)[:90]}\n")
        if not composite and seconds > self.slowest[0]:
            self.slowest = (seconds, f"{op} {args}")
        if self.ops % 64 == 0:
            self.sample_rss()
        if raid != ref:
            why = Known(self.largest).explain(op, args, raid, ref)
            if why:
                self.known[why] = self.known.get(why, 0) + 1
                if reconcile:
                    reconcile()
            else:
                self.divergences.append((op, args, raid, ref))
                if len(self.divergences) <= self.a.show:
                    print(f"hostile: differs: {op} {args}: raidfs {raid}, tmpfs {ref}", flush=True)
        return raid, ref

    # -- names ---------------------------------------------------------
    def name(self):
        r = self.rng.random()
        if r < 0.05:
            return "n" * 255
        if r < 0.07:
            return "m" * 256
        return f"f{self.rng.randrange(12)}"

    def rel(self):
        r = self.rng.random()
        if r < 0.25:
            return os.path.join(f"d{self.rng.randrange(3)}", self.name())
        if r < 0.3:
            return os.path.join("d0", "d1", self.name())
        return self.name()

    def size(self):
        return self.rng.choice(BIG) if self.rng.random() < 0.4 else self.rng.randrange(0, 300_000)

    # -- handles -------------------------------------------------------
    def open_handle(self, rel, flags, mode=0o644):
        def do(s):
            fd = os.open(s.p(rel), flags, mode)
            return fd
        raid, ref = None, None
        t = time.perf_counter()
        try:
            raid = os.open(self.raid.p(rel), flags, mode)
            r1 = ("ok", None)
        except OSError as e:
            r1 = ("err", errno.errorcode.get(e.errno, str(e.errno)))
        dt = time.perf_counter() - t
        try:
            ref = os.open(self.ref.p(rel), flags, mode)
            r2 = ("ok", None)
        except OSError as e:
            r2 = ("err", errno.errorcode.get(e.errno, str(e.errno)))
        self.ops += 1
        if dt > self.slowest[0]:
            self.slowest = (dt, f"open {rel!r} {flags:#o}")
        args = {"rel": rel[:40], "flags": flags, "h": self.handles}
        if self.trace:
            self.trace.write(f"{self.ops} open {args} raidfs={r1} tmpfs={r2}\n")
        if r1 != r2:
            why = Known(self.largest).explain("open", args, r1, r2)
            if why:
                self.known[why] = self.known.get(why, 0) + 1
            else:
                self.divergences.append(("open", args, r1, r2))
                if len(self.divergences) <= self.a.show:
                    print(f"hostile: differs: open {args}: raidfs {r1}, tmpfs {r2}", flush=True)
        if raid is None and ref is None:
            return None
        h = self.handles
        self.handles += 1
        self.o_path[h] = bool(flags & os.O_PATH)
        self.raid.fds[h] = raid
        self.ref.fds[h] = ref
        return h

    def close_handle(self, h):
        if self.trace:
            self.trace.write(f"{self.ops} close h={h}\n")
        for s in (self.raid, self.ref):
            fd = s.fds.pop(h, None)
            if fd is not None:
                os.close(fd)

    def past_largest(self, op, fn, **args):
        """An operation that ends past raidfs's largest file (tmpfs's is
        2^63 - 1): run on raidfs alone, which must answer as ext4 does past
        its own, EFBIG; tmpfs is left as it was."""
        raid, seconds = outcome(fn)
        self.ops += 1
        if self.trace:
            self.trace.write(f"{self.ops} {op} {args} raidfs={str(raid)[:90]} (past the largest file)\n")
        if seconds > self.slowest[0]:
            self.slowest = (seconds, f"{op} {args}")
        if raid == ("err", "EFBIG"):
            self.known["largest file"] = self.known.get("largest file", 0) + 1
        elif raid == ("err", "ENOTSUP") and args.get("mode") in ("collapse", "insert"):
            # FUSE refuses these modes itself, before any filesystem.
            self.known["collapse/insert refused by FUSE"] = self.known.get("collapse/insert refused by FUSE", 0) + 1
        else:
            self.divergences.append((op, args, raid, ("err", "EFBIG")))
            if len(self.divergences) <= self.a.show:
                print(f"hostile: differs: {op} {args}: raidfs {raid}, ext4 would say EFBIG", flush=True)

    def require_inside(self, raid, ref):
        """Every descriptor the calls act on is on the raidfs mount or the
        reference tmpfs, never elsewhere on the host (stops the run)."""
        for fd, dev, where in ((raid, self.raid_dev, "the raidfs mount"), (ref, self.ref_dev, "the tmpfs")):
            if os.fstat(fd).st_dev != dev:
                raise RuntimeError(f"a descriptor left {where}: stopping before it changes the host")

    def writable(self, h):
        """Whether a size change through handle h passes the kernel's own
        checks (opened for writing, not O_PATH): only then is the
        filesystem asked, and its largest file decides."""
        try:
            flags = fcntl.fcntl(self.raid.fds[h], fcntl.F_GETFL)   # F_GETFL
        except OSError:
            return False
        return flags & os.O_PATH == 0 and flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)

    def on_handle(self, op, h, fn, **args):
        if self.raid.fds.get(h) is None or self.ref.fds.get(h) is None:
            return
        self.require_inside(self.raid.fds[h], self.ref.fds[h])
        end = args.get("end")
        if end is not None and self.writable(h):
            if op == "write" and fcntl.fcntl(self.raid.fds[h], fcntl.F_GETFL) & os.O_APPEND:   # (F_GETFL) pwrite appends
                end = os.fstat(self.raid.fds[h]).st_size + args["count"]
            # (A write whose end passes 2^63 - 1 is the kernel's EINVAL, on both.)
            # (An empty write returns 0 before any limit, everywhere.)
            if end > self.largest and (op != "write" or (end - args["count"] >= self.largest and end < 1 << 63
                                                         and args["count"] > 0)):
                fd = self.raid.fds[h]
                return self.past_largest(op, lambda: fn(fd), h=h, **args)
        raid, ref = self.raid.fds[h], self.ref.fds[h]

        def reconcile():
            if op == "lseek":   # the position, wherever SEEK_DATA/HOLE left it
                os.lseek(ref, os.lseek(raid, 0, os.SEEK_CUR), os.SEEK_SET)
        self.both(op, lambda s: fn(s.fds[h]), reconcile=reconcile, h=h, **args)

    # -- the random operations -----------------------------------------
    def random_op(self):
        rng = self.rng
        live = [h for h in self.raid.fds if self.raid.fds[h] is not None and self.ref.fds.get(h) is not None]
        r = rng.random()
        if r < 0.14 or not live:
            flags = rng.choice(OPEN_FLAGS)
            for m in OPEN_MODIFIERS:
                if rng.random() < 0.15:
                    flags |= m
            if rng.random() < 0.3:
                flags |= os.O_CREAT
            if rng.random() < 0.02:
                flags = os.O_TMPFILE | os.O_RDWR
                self.open_handle("d0", flags)
                return
            h = self.open_handle(self.rel(), flags)
            if h is not None and len(self.raid.fds) > 64:
                self.close_handle(min(self.raid.fds))
            return
        h = rng.choice(live)
        if r < 0.30:
            off, n = self.size(), rng.choice([0, 1, 100, 4096, 65536, 1 << 20])
            data = rng.randbytes(n)
            # Across the largest file, raidfs writes what lies before it (as
            # ext4 does): tmpfs is given those bytes alone.
            cut = len(data) if off < 0 or off + n <= self.largest or off + n >= 1 << 63 else max(0, self.largest - off)
            if self.raid.fds.get(h) is not None and fcntl.fcntl(self.raid.fds[h], fcntl.F_GETFL) & os.O_APPEND:
                cut = len(data)   # (it appends: see on_handle)
            self.on_handle("write", h, lambda fd: os.pwrite(fd, data if fd == self.raid.fds[h] else data[:cut], off),
                           offset=off, count=n, end=off + n)
        elif r < 0.42:
            off, n = self.size(), rng.choice([1, 100, 4096, 131072, 1 << 20])
            self.on_handle("read", h, lambda fd: os.pread(fd, n, off), offset=off, count=n)
        elif r < 0.48:
            size = self.size()
            self.on_handle("ftruncate", h, lambda fd: os.ftruncate(fd, size), size=size, end=size)
        elif r < 0.54:
            mode = rng.choice(list(FALLOC_MODES))
            # (Reserving gigabytes would fill the reference tmpfs: real
            # reservations stay small, huge lengths go past any limit.)
            off = self.size()
            n = rng.choice([1, 4096, 1 << 20, 16 << 20, -1, 0, 1 << 62, (1 << 63) - 1, 999_999_999_999_999, 1 << 46])
            self.on_handle("fallocate", h, lambda fd: fallocate(fd, FALLOC_MODES[mode], off, n),
                           mode=mode, offset=off, length=n, end=(off + n if off >= 0 and n > 0 else None))
        elif r < 0.60:
            whence = rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE])
            off = self.size()
            try:
                directory = stat.S_ISDIR(os.fstat(self.raid.fds[h]).st_mode)
            except OSError:
                directory = False
            self.on_handle("lseek", h, lambda fd: os.lseek(fd, off, whence), whence=whence, offset=off, directory=directory)
        elif r < 0.64:
            self.on_handle("fstat", h, lambda fd: stat_view(os.fstat(fd)), o_path=self.o_path.get(h, False))
        elif r < 0.67:
            mode = rng.choice([0o644, 0o4755, 0o2755, 0o7777, 0o000])
            self.on_handle("fchmod", h, lambda fd: os.fchmod(fd, mode), mode=mode)
        elif r < 0.69:
            uid, gid = rng.choice([(0, 0), (1000, 1000), (65534, 65534), (-1, 5), (123456, -1)])
            self.on_handle("fchown", h, lambda fd: os.fchown(fd, uid, gid), uid=uid, gid=gid)
        elif r < 0.71:
            t = rng.choice([(0, 0), (-1, -1), (2 ** 33, 2 ** 33), (1.5, 1e9)])
            self.on_handle("futimens", h, lambda fd: os.utime(fd, t), times=t)
        elif r < 0.73:
            self.on_handle("fsync", h, lambda fd: os.fsync(fd))
        elif r < 0.75:
            self.close_handle(h)
        elif r < 0.80:
            rel = self.rel()
            self.both("unlink", lambda s: os.unlink(s.p(rel)), rel=rel[:40])
        elif r < 0.84:
            rel = self.rel()
            self.both("mkdir", lambda s: os.mkdir(s.p(rel), 0o755), rel=rel[:40])
        elif r < 0.87:
            rel = self.rel()
            self.both("rmdir", lambda s: os.rmdir(s.p(rel)), rel=rel[:40])
        elif r < 0.90:
            a, b = self.rel(), self.rel()
            self.both("rename", lambda s: os.rename(s.p(a), s.p(b)), src=a[:40], dst=b[:40])
        elif r < 0.91:
            a, b = self.rel(), self.rel()
            self.both("link", lambda s: os.link(s.p(a), s.p(b)), src=a[:40], dst=b[:40])
        elif r < 0.92:
            rel = self.rel()
            # Targets that stay inside the tree wherever the link is (a
            # link out of it would let the descriptor calls below change
            # the host's own directories), dangling ones and over-long ones.
            target = rng.choice(["x", "f1", "d0", "d0/f2", "t" * 4095, "t" * 4096])
            self.both("symlink", lambda s: os.symlink(target, s.p(rel)), rel=rel[:40], target=len(target))
        elif r < 0.94:
            rel = self.rel()
            self.both("stat", lambda s: stat_view(os.lstat(s.p(rel))), rel=rel[:40])
        elif r < 0.95:
            rel = rng.choice(["", "d0", "d1", "d0/d1"])
            self.both("listdir", lambda s: sorted(os.listdir(s.p(rel))), composite=True, rel=rel)
        elif r < 0.97:
            rel = self.inside(self.rel())
            key = "user." + rng.choice(["a", "b" * 200, "c" * 250])
            value = rng.randbytes(rng.choice([0, 10, 4000, 65536, 65537]))
            try:
                old = os.getxattr(self.ref.p(rel), key)
            except OSError:
                old = None

            def restore():   # what tmpfs held before, as raidfs kept it
                if old is None:
                    os.removexattr(self.ref.p(rel), key)
                else:
                    os.setxattr(self.ref.p(rel), key, old)
            self.both("setxattr", lambda s: os.setxattr(s.p(rel), key, value), rel=rel[:40], name=len(key), size=len(value),
                      reconcile=restore)
        elif r < 0.98:
            rel = self.rel()
            key = "user." + rng.choice(["a", "b" * 200, "c" * 250])
            self.both("getxattr", lambda s: os.getxattr(s.p(rel), key), rel=rel[:40], name=len(key))
        elif r < 0.99:
            rel = self.rel()
            self.both("listxattr", lambda s: sorted(x for x in os.listxattr(s.p(rel)) if x.startswith("user.")), rel=rel[:40])
        else:
            rel = self.inside(self.rel())
            size = self.size()
            try:
                regular = stat.S_ISREG(os.stat(self.raid.p(rel)).st_mode)   # (truncate follows links)
            except OSError:
                regular = False
            if size > self.largest and regular:
                self.past_largest("truncate", lambda: os.truncate(self.raid.p(rel), size), rel=rel[:40], size=size)
            else:
                self.both("truncate", lambda s: os.truncate(s.p(rel), size), rel=rel[:40], size=size)

    # -- the structured phases -----------------------------------------
    def phase_many_entries(self, n):
        for s in (self.raid, self.ref):
            os.mkdir(s.p("big"))
        for i in range(n):
            name = f"big/entry-{i:07d}"
            self.both("create", lambda s: os.close(os.open(s.p(name), os.O_CREAT | os.O_WRONLY, 0o644)), rel=name)
            if self.deadline_passed():
                break
        self.both("listdir", lambda s: sorted(os.listdir(s.p("big"))), composite=True, rel="big")
        for name in sorted(os.listdir(self.ref.p("big"))):
            self.both("unlink", lambda s: os.unlink(s.p("big/" + name)), rel=name)
        self.both("rmdir", lambda s: os.rmdir(s.p("big")), rel="big")

    def phase_deep_tree(self):
        rel = ""
        while len(os.path.join(self.raid.root, rel)) < 4095 - 300:
            rel = os.path.join(rel, "D" * 200) if rel else "D" * 200
            self.both("mkdir", lambda s: os.mkdir(s.p(rel)), depth=rel.count("/"))
        leaf = os.path.join(rel, "x" * (4090 - len(os.path.join(self.raid.root, rel)) - 1))
        self.both("create", lambda s: os.close(os.open(s.p(leaf), os.O_CREAT | os.O_WRONLY, 0o600)), path=len(self.raid.p(leaf)))
        too_long = leaf + "yyyyyyyy"
        self.both("create", lambda s: os.close(os.open(s.p(too_long), os.O_CREAT | os.O_WRONLY, 0o600)), path=len(self.raid.p(too_long)))
        self.both("stat", lambda s: stat_view(os.stat(s.p(leaf))), path=len(self.raid.p(leaf)))
        self.both("unlink", lambda s: os.unlink(s.p(leaf)), path=len(self.raid.p(leaf)))
        while rel:
            self.both("rmdir", lambda s: os.rmdir(s.p(rel)), depth=rel.count("/"))
            rel = os.path.dirname(rel)

    def phase_many_fds(self, n):
        files = [f"fd{i}" for i in range(min(n, 200))]
        hs = []
        for i in range(n):
            h = self.open_handle(files[i % len(files)], os.O_CREAT | os.O_RDWR)
            if h is not None:
                hs.append(h)
                if i % 97 == 0:
                    self.on_handle("write", h, lambda fd: os.pwrite(fd, b"z" * 100, i), offset=i, count=100, end=i + 100)
            if self.deadline_passed():
                break
        for h in hs[::50]:
            self.on_handle("read", h, lambda fd: os.pread(fd, 200000, 0), offset=0, count=200000)
        for h in hs:
            self.close_handle(h)
        for f in files:
            self.both("unlink", lambda s: os.unlink(s.p(f)), rel=f)

    def phase_removed_while_open(self):
        for s in (self.raid, self.ref):
            os.mkdir(s.p("rd"))
        hd = self.open_handle("rd", os.O_RDONLY | os.O_DIRECTORY)
        hf = self.open_handle("rf", os.O_CREAT | os.O_RDWR)
        self.on_handle("write", hf, lambda fd: os.pwrite(fd, b"data" * 1000, 0), offset=0, count=4000, end=4000)
        self.both("rmdir", lambda s: os.rmdir(s.p("rd")), rel="rd")
        self.both("unlink", lambda s: os.unlink(s.p("rf")), rel="rf")
        for h in (hd, hf):
            self.on_handle("fstat", h, lambda fd: stat_view(os.fstat(fd)))
            self.on_handle("fchmod", h, lambda fd: os.fchmod(fd, 0o700), mode=0o700)
            self.on_handle("fchown", h, lambda fd: os.fchown(fd, 4321, 1234), uid=4321, gid=1234)
            self.on_handle("futimens", h, lambda fd: os.utime(fd, (5, 6)), times=(5, 6))
            self.on_handle("fstat", h, lambda fd: stat_view(os.fstat(fd)))
        self.on_handle("listdir", hd, lambda fd: sorted(os.listdir(fd)), composite=True)
        self.on_handle("read", hf, lambda fd: os.pread(fd, 8000, 0), offset=0, count=8000)
        self.on_handle("ftruncate", hf, lambda fd: os.ftruncate(fd, 10), size=10, end=10)
        self.on_handle("read", hf, lambda fd: os.pread(fd, 8000, 0), offset=0, count=8000)
        self.close_handle(hd)
        self.close_handle(hf)

    def deadline_passed(self):
        return self.a.seconds and time.time() > self.deadline

    def run(self):
        self.deadline = time.time() + (self.a.seconds or 0)
        for s in (self.raid, self.ref):
            for d in ("d0", "d1", "d2", "d0/d1"):
                os.mkdir(s.p(d))
        self.phase_removed_while_open()
        self.phase_deep_tree()
        self.phase_many_fds(self.a.fds)
        self.phase_many_entries(self.a.dir_entries)
        phases = self.ops
        while True:
            if self.a.seconds:
                if self.deadline_passed():
                    break
            elif self.ops - phases >= self.a.ops:
                break
            self.random_op()
        self.sample_rss()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--level", type=int, choices=[5, 6], default=5)
    ap.add_argument("--ops", type=int, default=20000, help="random operations after the phases (unless --seconds)")
    ap.add_argument("--seconds", type=float, default=0, help="run this long instead")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir-entries", type=int, default=100_000)
    ap.add_argument("--fds", type=int, default=4000)
    ap.add_argument("--backing", help="directory for the member directories (default: the work directory)")
    ap.add_argument("--rss-limit-mib", type=int, default=128)
    ap.add_argument("--slowest-limit-ms", type=float, default=1000)
    ap.add_argument("--show", type=int, default=20, help="differences printed in full")
    ap.add_argument("--trace", help="write every operation and both outcomes to this file")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("hostile: run as root (it mounts a tmpfs for the reference)", file=sys.stderr)
        return 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * a.fds + 256)), hard))
    # A signal ends the run through its cleanup (unmount, stop the daemon).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda n, _: sys.exit(128 + n))
    work = tempfile.mkdtemp(prefix="raidfs-hostile-")
    run = Run(a, bin_dir(), work)
    started = time.time()
    try:
        run.setup()
        run.run()
    finally:
        run.teardown()
        shutil.rmtree(work, ignore_errors=True)
    rss_mib = run.rss_max_kib / 1024
    checks = [("no unexplained difference from tmpfs", not run.divergences),
              (f"daemon RSS under {a.rss_limit_mib} MiB", rss_mib < a.rss_limit_mib)]
    if a.slowest_limit_ms:
        checks.append((f"no request over {a.slowest_limit_ms:.0f} ms", run.slowest[0] * 1000 <= a.slowest_limit_ms))
    print(f"hostile: RAID {a.level}, seed {a.seed}, {run.ops} operations in {time.time() - started:.0f} s; "
          f"largest file {run.largest} bytes")
    print(f"hostile: {len(run.divergences)} unexplained differences; known: "
          + (", ".join(f"{k} {v}" for k, v in sorted(run.known.items())) or "none"))
    print(f"hostile: daemon RSS at most {rss_mib:.1f} MiB; slowest request {run.slowest[0] * 1000:.1f} ms ({run.slowest[1][:120]})")
    for what, ok in checks:
        print(f"hostile: {'ok' if ok else 'FAILED'}: {what}")
    passed = sum(ok for _, ok in checks)
    print(f"{passed} passed, {len(checks) - passed} failed")
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
