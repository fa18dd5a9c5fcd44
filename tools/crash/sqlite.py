#!/usr/bin/env python3
"""SQLite under kill -9: a program commits transactions into a database on
a raidfs mount (synchronous=FULL, rollback journal or WAL) while the daemon
is killed with SIGKILL at random moments. After each remount:
  - the array is clean (`raidctl status` exit 0): no member failed;
  - `pragma integrity_check` says ok;
  - every transaction whose COMMIT returned is there, whole.
The journal files come and go with every transaction, so a kill lands inside
their creation and deletion as often as inside a data write.

Usage: tools/crash/sqlite.py --level 5 --rounds 50 --journal delete|wal
Prints 'N passed, N failed' at the end; exit 0 when every round passed.
"""
import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Array, bin_dir, reap  # noqa: E402


def committer(db, logpath, journal, start):
    """Child: commit transactions until the mount dies; log each commit
    after it returned. Transaction k inserts row k and adds k to a total."""
    log = open(logpath, "w", buffering=1)
    try:
        con = sqlite3.connect(db, isolation_level=None, timeout=30)
        con.execute(f"pragma journal_mode={journal}")
        con.execute("pragma synchronous=full")
        k = start
        while True:
            k += 1
            con.execute("begin")
            con.execute("insert into t(id, payload) values (?, ?)", (k, os.urandom(200 + k % 3000)))
            con.execute("update total set sum = sum + ?", (k,))
            con.execute("commit")
            log.write(f"{k}\n")
    except (sqlite3.Error, OSError):
        pass
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--level", type=int, default=5)
    ap.add_argument("--members", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--journal", choices=["delete", "wal"], default="delete")
    ap.add_argument("--chunk", default="16K")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", default="release")
    args = ap.parse_args()
    members = args.members or {1: 3, 5: 4, 6: 6}[args.level]
    bindir = bin_dir(args.config)
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix=f"raidfs-sqlite-r{args.level}-")
    arr = Array(bindir, work, args.level, members, args.chunk)
    passed = failed = 0
    committed = 0
    try:
        arr.mount()
        db = os.path.join(arr.mnt, "db.sqlite")
        con = sqlite3.connect(db, isolation_level=None)
        con.execute(f"pragma journal_mode={args.journal}")
        con.execute("create table t(id integer primary key, payload blob)")
        con.execute("create table total(sum integer)")
        con.execute("insert into total values (0)")
        con.close()
        for rnd in range(args.rounds):
            log = os.path.join(work, f"commits-{rnd}.log")
            pid = os.fork()
            if pid == 0:
                committer(db, log, args.journal, committed)
            time.sleep(rng.uniform(0.05, 1.0))
            arr.kill()
            reap(pid)
            with open(log) as f:
                done = [int(x) for x in f.read().split()]
            last = done[-1] if done else committed
            problem = None
            try:
                arr.mount()
                problem = arr.status_problem()
                if not problem:
                    con = sqlite3.connect(db, isolation_level=None)
                    ok = con.execute("pragma integrity_check").fetchone()[0]
                    rows, top = con.execute("select count(*), max(id) from t").fetchone()
                    total = con.execute("select sum from total").fetchone()[0]
                    con.close()
                    top = top or 0
                    if ok != "ok":
                        problem = f"integrity_check: {ok}"
                    elif top < last:
                        problem = f"committed transaction {last} lost (database ends at {top})"
                    elif rows != top or total != top * (top + 1) // 2:
                        problem = f"{rows} rows and total {total} for transactions 1..{top}: a transaction is not whole"
                    committed = top
            except Exception as e:  # noqa: BLE001 - report and count
                problem = f"{type(e).__name__}: {e}"
            if problem:
                failed += 1
                print(f"round {rnd}: FAIL {problem}", flush=True)
                break
            passed += 1
            if (rnd + 1) % 10 == 0:
                print(f"round {rnd + 1}: {passed} passed, {failed} failed ({committed} transactions)", flush=True)
        arr.unmount()
        if failed == 0:
            chk = arr.check()
            if chk.returncode != 0:
                failed += 1
                print(f"raidctl check exit {chk.returncode}: {chk.stdout[-500:]}")
    finally:
        arr.unmount()
        shutil.rmtree(work, ignore_errors=True)
    print(f"SQLite ({args.journal}) on RAID {args.level} under kill -9: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
