"""Namespace churn for the crash harness (harness.py --workload namespace).

A child process creates, unlinks, renames, links, symlinks, makes and
removes directories at random under the mount, logging each operation
before it starts and its outcome after it returns. The daemon is killed
with SIGKILL at a random moment. After the remount:
  - the array must be clean (`raidctl status` exit 0): no member failed;
  - the tree must be what the acknowledged operations made it, with the one
    operation in flight at the kill either done or not done, as a unit;
  - every file must hold exactly what its creator wrote (kill -9 loses no
    written byte: the host keeps the members' page cache).
The next round goes on churning the same tree, so a change cut short at the
kill meets the next change of the same names.
"""
import errno
import os
import random

NAMES = [f"n{i}" for i in range(10)]
DIRS = ["", "d0", "d1", "d0/e"]


def content(k):
    return (f"file {k}\n" * (1 + k % 300)).encode()


def churn(root, logpath, seed, start_id):
    """Child: churn until the mount dies. Log lines:
    B op args...   before the operation
    A              it returned success
    E errno        it failed (the model treats it as not done)"""
    rng = random.Random(seed)
    log = open(logpath, "w", buffering=1)
    k = start_id
    # Once the daemon is killed, auto_unmount may take the mount away before
    # an operation fails: stop as soon as root is no longer the mount.
    mounted_dev = os.stat(root).st_dev
    try:
        while os.stat(root).st_dev == mounted_dev:
            d = rng.choice(DIRS)
            p = os.path.join(d, rng.choice(NAMES)) if d else rng.choice(NAMES)
            q_dir = rng.choice(DIRS)
            q = os.path.join(q_dir, rng.choice(NAMES)) if q_dir else rng.choice(NAMES)
            r = rng.random()
            if r < 0.30:
                k += 1
                op = ("create", p, str(k))
            elif r < 0.50:
                op = ("unlink", p)
            elif r < 0.68:
                op = ("rename", p, q)
            elif r < 0.76:
                op = ("link", p, q)
            elif r < 0.84:
                op = ("symlink", p, "t" + str(rng.randrange(100)))
            elif r < 0.92:
                op = ("mkdir", p)
            else:
                op = ("rmdir", p)
            log.write("B " + " ".join(op) + "\n")
            try:
                full = os.path.join(root, p)
                if op[0] == "create":
                    fd = os.open(full, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                    try:
                        os.write(fd, content(int(op[2])))
                    finally:
                        os.close(fd)
                elif op[0] == "unlink":
                    os.unlink(full)
                elif op[0] == "rename":
                    os.rename(full, os.path.join(root, q))
                elif op[0] == "link":
                    os.link(full, os.path.join(root, q))
                elif op[0] == "symlink":
                    os.symlink(op[2], full)
                elif op[0] == "mkdir":
                    os.mkdir(full, 0o755)
                else:
                    os.rmdir(full)
                log.write("A\n")
            except OSError as e:
                if e.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                    break   # the daemon is gone
                log.write(f"E {e.errno}\n")
    except OSError:
        pass
    os._exit(0)


class Model:
    """The tree as path -> ('f', id) | ('d',) | ('l', target, id); hard
    links share an id."""

    def __init__(self):
        self.tree = {"d0": ("d",), "d1": ("d",), "d0/e": ("d",)}
        self.symlinks = 0   # symlinks get ids too: a hard link of one is the same inode

    def copy(self):
        m = Model()
        m.tree = dict(self.tree)
        m.symlinks = self.symlinks
        return m

    def children(self, p):
        pre = p + "/"
        return [k for k in self.tree if k.startswith(pre)]

    def apply(self, op):
        """Applies op as Linux would; returns the errno it would fail with, or 0."""
        t = self.tree
        kind = op[0]
        p = op[1]
        parent = os.path.dirname(p)
        if parent and t.get(parent) != ("d",):
            return errno.ENOENT
        if kind == "create":
            if p in t:
                return errno.EEXIST
            t[p] = ("f", int(op[2]))
        elif kind in ("symlink", "mkdir"):
            if p in t:
                return errno.EEXIST
            self.symlinks += 1
            t[p] = ("l", op[2], self.symlinks) if kind == "symlink" else ("d",)
        elif kind == "unlink":
            if p not in t:
                return errno.ENOENT
            if t[p] == ("d",):
                return errno.EISDIR
            del t[p]
        elif kind == "rmdir":
            if p not in t:
                return errno.ENOENT
            if t[p] != ("d",):
                return errno.ENOTDIR
            if self.children(p):
                return errno.ENOTEMPTY
            del t[p]
        elif kind == "link":
            q = op[2]
            qp = os.path.dirname(q)
            if p not in t:
                return errno.ENOENT
            if qp and t.get(qp) != ("d",):
                return errno.ENOENT
            if q in t:
                return errno.EEXIST
            if t[p] == ("d",):
                return errno.EPERM
            t[q] = t[p]
        elif kind == "rename":
            q = op[2]
            qp = os.path.dirname(q)
            if p not in t:
                return errno.ENOENT
            if qp and t.get(qp) != ("d",):
                return errno.ENOENT
            if p == q:
                return 0
            src_dir = t[p] == ("d",)
            if src_dir and (q + "/").startswith(p + "/"):
                return errno.EINVAL
            if q in t:
                if t[q] == ("d",):
                    if not src_dir:
                        return errno.EISDIR
                    if self.children(q):
                        return errno.ENOTEMPTY
                elif src_dir:
                    return errno.ENOTDIR
                elif t[q] == t[p]:
                    return 0   # two names of one inode: nothing happens
            moved = {k: v for k, v in t.items() if k.startswith(p + "/")}
            for k in moved:
                del t[k]
            t[q] = t.pop(p)
            for k, v in moved.items():
                t[q + k[len(p):]] = v
        return 0


def replay(logpath, model):
    """Applies the acknowledged operations of a churn log to model. Returns
    (model, in-flight op or None, unexpected error or None)."""
    with open(logpath) as f:
        lines = f.read().split("\n")
    pending = None
    for line in lines:
        if not line:
            continue
        if line.startswith("B "):
            parts = line[2:].split(" ")
            pending = tuple(parts)
        elif line == "A" and pending:
            err = model.apply(pending)
            if err:
                return model, None, f"{' '.join(pending)} succeeded on raidfs but Linux would fail it ({errno.errorcode.get(err)})"
            pending = None
        elif line.startswith("E ") and pending:
            got = int(line[2:])
            want = model.copy().apply(pending)
            if got != want:
                return model, None, f"{' '.join(pending)} failed with {errno.errorcode.get(got)} where Linux gives {errno.errorcode.get(want, 'success')}"
            pending = None
    return model, pending, None


def observe(root):
    """The tree under the mount as the model writes it, plus file contents."""
    tree, data = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        for n in dirnames + filenames:
            p = os.path.join(rel, n) if rel else n
            full = os.path.join(root, p)
            if os.path.islink(full):
                tree[p] = ("l", os.readlink(full), os.lstat(full).st_ino)
            elif os.path.isdir(full):
                tree[p] = ("d",)
            else:
                st = os.stat(full)
                with open(full, "rb") as f:
                    data[p] = f.read()
                tree[p] = ("f", st.st_ino)
    return tree, data


def matches(model, tree, data):
    """None when the observed tree is the model's (hard links as links,
    contents as written); else why not."""
    if set(model.tree) != set(tree):
        extra = sorted(set(tree) - set(model.tree))
        missing = sorted(set(model.tree) - set(tree))
        return f"paths differ: extra {extra[:5]}, missing {missing[:5]}"
    inode_of = {}
    for p, v in model.tree.items():
        got = tree[p]
        if v[0] != got[0]:
            return f"{p} is {got[0]}, expected {v[0]}"
        if v[0] == "l":
            if v[1] != got[1]:
                return f"{p} -> {got[1]}, expected -> {v[1]}"
            ino = inode_of.setdefault(("l", v[2]), got[2])
            if ino != got[2]:
                return f"{p} should be a hard link of symlink {v[2]} (inode {ino}) but is inode {got[2]}"
        if v[0] == "f":
            if data[p] != content(v[1]):
                return f"{p} holds {len(data[p])} bytes that are not file {v[1]}'s content"
            ino = inode_of.setdefault(("f", v[1]), got[1])
            if ino != got[1]:
                return f"{p} should be a hard link of file {v[1]} (inode {ino}) but is inode {got[1]}"
    return None


def check_round(model, inflight, tree, data):
    """The tree must be the model without the in-flight op, or with it."""
    why = matches(model, tree, data)
    if why is None:
        return None, model
    if inflight:
        after = model.copy()
        if after.apply(inflight) == 0:
            if matches(after, tree, data) is None:
                return None, after
            # A create cut short may leave its file empty or partly written.
            if inflight[0] == "create" and inflight[1] in tree and tree[inflight[1]][0] == "f":
                got = data.get(inflight[1], b"")
                if content(int(inflight[2])).startswith(got):
                    partial = after.copy()
                    data2 = dict(data)
                    data2[inflight[1]] = content(int(inflight[2]))
                    if matches(partial, tree, data2) is None:
                        return None, after
    return f"{why} (in flight at the kill: {' '.join(inflight) if inflight else 'nothing'})", model
