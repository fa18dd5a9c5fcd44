#!/usr/bin/env python3
"""Turns a tools/bench/run.sh results directory into report.md and PNGs.

    tools/bench/report.py DIR

Every figure is the median of its rounds. Throughputs are shown with their
ratio to passthrough_ll from the same run (higher is better); times with
their multiple of passthrough_ll's time (lower is better).
"""
import collections
import os
import shutil
import statistics
import subprocess
import sys

FS_ORDER = ["backing", "passthrough_ll", "mergerfs",
            "raid1", "raid5", "raid6",
            "raid1-degraded", "raid5-degraded", "raid6-degraded",
            "raid1-rebuilding", "raid5-rebuilding", "raid6-rebuilding"]
FS_LABEL = {
    "backing": "backing (no FUSE)", "passthrough_ll": "passthrough_ll", "mergerfs": "mergerfs ×6",
    "raid1": "raidfs RAID 1 ×3", "raid5": "raidfs RAID 5 ×4", "raid6": "raidfs RAID 6 ×6",
}
for lvl, n, lost in (("1", 3, 1), ("5", 4, 1), ("6", 6, 2)):
    FS_LABEL[f"raid{lvl}-degraded"] = f"RAID {lvl} ×{n}, {lost} failed"
    FS_LABEL[f"raid{lvl}-rebuilding"] = f"RAID {lvl} ×{n}, rebuilding"
REF = "passthrough_ll"


def load(path):
    data = collections.defaultdict(list)
    units = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                continue
            section, fs, workload, _round, value, unit = parts
            try:
                data[(section, fs, workload)].append(float(value))
            except ValueError:
                continue
            units[(section, workload)] = unit
    return {k: statistics.median(v) for k, v in data.items()}, data, units


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ordered(fss):
    return [f for f in FS_ORDER if f in fss]


class Report:
    def __init__(self, out):
        self.out = out
        self.med, self.raw, self.units = load(os.path.join(out, "results.tsv"))
        self.machine = {}
        mpath = os.path.join(out, "machine.tsv")
        if os.path.exists(mpath):
            for line in open(mpath):
                k, _, v = line.rstrip("\n").partition("\t")
                self.machine[k] = v
        self.lines = []
        self.checks = []
        self.plots = []

    def get(self, section, fs, workload):
        return self.med.get((section, fs, workload))

    def workloads(self, section):
        seen = []
        for (s, _fs, w) in self.med:
            if s == section and w not in seen:
                seen.append(w)
        return seen

    def filesystems(self, section):
        return ordered({fs for (s, fs, _w) in self.med if s == section})

    def w(self, text=""):
        self.lines.append(text)

    def table(self, section, workloads, lower_is_better=False, extra=None):
        fss = self.filesystems(section)
        if not fss:
            return
        unit = self.units.get((section, workloads[0]), "")
        head = ["filesystem"] + [f"{w} ({self.units.get((section, w), unit)})" for w in workloads]
        if extra:
            head += [h for h, _ in extra]
        self.w("| " + " | ".join(head) + " |")
        self.w("|" + "---|" * len(head))
        for fs in fss:
            cells = [FS_LABEL.get(fs, fs)]
            for wl in workloads:
                v, ref = self.get(section, fs, wl), self.get(section, REF, wl)
                cell = fmt(v)
                if v is not None and ref and fs != REF:
                    cell += f" ({v / ref:.2f}×)"
                cells.append(cell)
            if extra:
                cells += [f(fs) for _, f in extra]
            self.w("| " + " | ".join(cells) + " |")
        self.w()

    def gnuplot(self, name, script):
        if not shutil.which("gnuplot"):
            return
        path = os.path.join(self.out, name + ".gp")
        with open(path, "w") as f:
            f.write(f"set terminal pngcairo size 1100,600 font 'sans,10' noenhanced\n"
                    f"set output '{name}.png'\nset bmargin 6\n" + script)
        subprocess.run(["gnuplot", name + ".gp"], cwd=self.out, check=True)
        self.plots.append(name)

    def bars(self, name, section, workloads, title, ylabel):
        """Clustered bars: one cluster per FUSE filesystem, one bar per
        workload (the backing, many times faster, is in the tables)."""
        fss = [fs for fs in self.filesystems(section) if fs != "backing"]
        if not fss:
            return
        dat = os.path.join(self.out, name + ".dat")
        with open(dat, "w") as f:
            f.write("fs " + " ".join(workloads) + "\n")
            for fs in fss:
                vals = [self.get(section, fs, wl) for wl in workloads]
                f.write('"' + FS_LABEL.get(fs, fs).replace(" ×", "\\n×").replace(", ", "\\n") + '" ' +
                        " ".join("NaN" if v is None else str(v) for v in vals) + "\n")
        cols = " ".join(f"'' using {i + 2} title columnheader({i + 2})," for i in range(1, len(workloads)))
        self.gnuplot(name, f"""set title "{title}"
set ylabel "{ylabel}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right top
set xtics font ',8'
set grid ytics
set yrange [0:*]
plot '{name}.dat' using 2:xtic(1) title columnheader(2), {cols}
""")

    def lines_plot(self, name, series, title, xlabel, ylabel):
        """series: {label: [(x, y)]}; log x axis."""
        if not series:
            return
        blocks = []
        dat = os.path.join(self.out, name + ".dat")
        with open(dat, "w") as f:
            for label, pts in series.items():
                f.write(f'# {label}\n')
                for x, y in pts:
                    f.write(f"{x} {y}\n")
                f.write("\n\n")
                blocks.append(label)
        plots = ", ".join(f"'{name}.dat' index {i} using 1:2 with linespoints title '{lab}'"
                          for i, lab in enumerate(blocks))
        self.gnuplot(name, f"""set title "{title}"
set xlabel "{xlabel}"
set ylabel "{ylabel}"
set logscale x 2
set key outside right top
set grid
set yrange [0:*]
plot {plots}
""")

    def check(self, what, ok, detail):
        self.checks.append((what, ok, detail))

    # --- sections --------------------------------------------------------

    def fio(self):
        wls = [w for w in ["seq-write-1j", "seq-read-1j", "rand-write-1j", "rand-read-1j",
                           "rand-write-direct-1j", "rand-read-direct-1j",
                           "seq-write-4j", "seq-read-4j", "rand-write-4j", "rand-read-4j",
                           "rand-write-direct-4j", "rand-read-direct-4j"]
               if w in self.workloads("fio")]
        if not wls:
            return
        self.w("## fio (psync)")
        self.w()
        self.w("Sequential: 1 MiB blocks, one file per job, writes end with fsync. Random: 4 KiB blocks on one "
               "file shared by the jobs, time-based, buffered and with O_DIRECT (direct). "
               "Reads after dropping the page cache. "
               "In brackets: the ratio to passthrough_ll (higher is better).")
        self.w()
        self.table("fio", wls)
        self.bars("fio-sequential", "fio", [w for w in wls if w.startswith("seq")],
                  "Sequential 1 MiB, psync", "MiB/s")
        self.bars("fio-random", "fio", [w for w in wls if w.startswith("rand")],
                  "Random 4 KiB, psync", "IOPS")
        def vs_ref(fs, wl):
            v, ref = self.get("fio", fs, wl), self.get("fio", REF, wl)
            return (v / ref, f"{fmt(v)} vs {fmt(ref)} = {v / ref:.2f}×") if v and ref else (None, "")
        for lvl in "56":
            for wl, least in [("rand-read-1j", 0.8), ("seq-write-1j", 0.7), ("seq-read-1j", 0.9)] + \
                    ([("rand-write-1j", 0.4)] if lvl == "5" else []):
                r, detail = vs_ref(f"raid{lvl}", wl)
                if r is not None:
                    self.check(f"RAID {lvl}: {wl} ≥ {least}× passthrough_ll", r >= least, detail)
        for fs in self.filesystems("fio"):
            one, four = self.get("fio", fs, "rand-write-direct-1j"), self.get("fio", fs, "rand-write-direct-4j")
            if one and four and fs.startswith("raid") and "-" not in fs:
                self.check(f"{fs}: O_DIRECT random writes, 4 jobs on one file > 1 job", four > one,
                           f"{fmt(four)} vs {fmt(one)} IOPS = {four / one:.2f}×")
        for lvl in "156":
            h, d = self.get("fio", f"raid{lvl}", "seq-read-1j"), self.get("fio", f"raid{lvl}-degraded", "seq-read-1j")
            if h and d:
                self.check(f"RAID {lvl}: degraded sequential read ≥ 0.5× healthy", d / h >= 0.5,
                           f"{fmt(d)} vs {fmt(h)} MiB/s = {d / h:.2f}×")

    def small(self):
        wls = [w for w in ["create", "stat", "unlink"] if w in self.workloads("small")]
        if not wls:
            return
        self.w("## Small files")
        self.w()
        self.w("One directory, 4 KiB files: create (open, write, close), then stat, then unlink each. "
               "Operations per second; in brackets the ratio to passthrough_ll.")
        self.w()
        self.table("small", wls)
        self.bars("small-files", "small", wls, "Small files (4 KiB)", "operations per second")

    def programs(self):
        wls = [w for w in ["rsync", "cp-al-mv", "tar", "git", "sqlite", "rm-rf"] if w in self.workloads("programs")]
        if not wls:
            return
        self.w("## Real programs")
        self.w()
        self.w("Seconds; in brackets the multiple of passthrough_ll's time (lower is better). "
               "rsync -a of a source tree; cp -al of it and mv of the copy; tar c of a documentation tree into "
               "the mount and x of it there; git add, commit, gc, fsck and clone (--no-hardlinks: mergerfs fails git's check of a hard-linked clone; cp -al measures links); SQLite WAL transactions "
               "(synchronous=FULL, one insert each); rm -rf of all of it.")
        self.w()

        def ratios(fs):
            return [self.get("programs", fs, w) / self.get("programs", REF, w) for w in wls
                    if self.get("programs", fs, w) and self.get("programs", REF, w)]

        def median_ratio(fs):
            r = ratios(fs)
            return f"{statistics.median(r):.2f}×" if r and fs != REF else "–"

        def max_ratio(fs):
            r = ratios(fs)
            return f"{max(r):.2f}×" if r and fs != REF else "–"
        self.table("programs", wls, extra=[("median ratio", median_ratio), ("worst ratio", max_ratio)])
        # Plot the multiples of passthrough_ll, one scale for all programs.
        dat_section = "programs-ratio"
        for fs in self.filesystems("programs"):
            for wl in wls:
                v, ref = self.get("programs", fs, wl), self.get("programs", REF, wl)
                if v and ref:
                    self.med[(dat_section, fs, wl)] = v / ref
        self.bars("programs", dat_section, wls, "Real programs: time as a multiple of passthrough_ll's",
                  "× passthrough_ll's time (lower is better)")
        for lvl in "56":
            r = ratios(f"raid{lvl}")
            if r:
                self.check(f"RAID {lvl}: real programs' median ≤ 2.0× passthrough_ll, none over 3×",
                           statistics.median(r) <= 2.0 and max(r) <= 3.0,
                           f"median {statistics.median(r):.2f}×, worst {max(r):.2f}×")

    def pgbench(self):
        wls = [w for w in ["tps-4c"] if w in self.workloads("pgbench")]
        if not wls:
            return
        self.w("## PostgreSQL pgbench")
        self.w()
        self.w("A PostgreSQL server with its data directory on the filesystem, pgbench's TPC-B-like "
               "transactions from 4 clients (every commit fsync'ed); transactions per second, in brackets "
               "the ratio to passthrough_ll (higher is better).")
        self.w()
        self.table("pgbench", wls)

    def sweep(self):
        wls = self.workloads("sweep")
        if not wls:
            return
        sizes = sorted({int(w.split("-")[1][:-1]) for w in wls})
        wls = [f"{op}-{s}M" for op in ("write", "read") for s in sizes]
        self.w("## File size sweep")
        self.w()
        self.w("Sequential 1 MiB writes (ending with fsync) and reads of one file of each size; MiB/s. "
               "On a tmpfs backing the largest sizes also measure the machine: the members hold the file and its "
               "redundancy (three copies on RAID 1) and the page cache one more copy, and a VM writes into memory "
               "it has not used lately several times slower than into recycled memory (docs/benchmarks.md).")
        self.w()
        self.table("sweep", wls)
        series = {}
        for fs in self.filesystems("sweep"):
            for op in ("write", "read"):
                pts = [(s, self.get("sweep", fs, f"{op}-{s}M")) for s in sizes]
                pts = [(x, y) for x, y in pts if y is not None]
                series[f"{FS_LABEL.get(fs, fs)} {op}"] = pts
                if fs.startswith("raid") and len(pts) > 1:
                    lo, hi = min(y for _, y in pts), max(y for _, y in pts)
                    self.check(f"{FS_LABEL.get(fs, fs)}: sequential {op} flat within 20% over {sizes[0]} MiB–{sizes[-1]} MiB",
                               lo >= 0.8 * hi, f"{fmt(lo)}–{fmt(hi)} MiB/s (lowest {lo / hi:.2f}× highest)")
        self.lines_plot("sweep", series, "Sequential throughput against file size", "file size (MiB)", "MiB/s")

    def maintenance(self):
        empty = self.get("maintenance", "backing", "cp-r")
        levels = [fs for fs in FS_ORDER if self.get("maintenance", fs, "rebuild") or self.get("maintenance", fs, "scrub")]
        if not levels:
            return
        self.w("## Scrub and rebuild")
        self.w()
        self.w("Data bytes covered per second (the rebuild: one member failed, an empty directory added, "
               "until the array is clean). Each array is set beside cp -r of the same amount of plain files "
               "on the same backing, run just before its rebuild with the array's members in place: on a VM, "
               "writing into memory the guest has not used lately is several times slower than writing into "
               "recycled memory, and a cp -r onto an empty tmpfs (first row) does not see that. "
               "\"Written\" is the bytes the new member received per second.")
        self.w()
        self.w("| what | MiB/s | ratio to cp -r |")
        self.w("|---|---|---|")
        if empty:
            self.w(f"| cp -r onto the empty backing | {fmt(empty)} | – |")
        for fs in levels:
            label = FS_LABEL.get(fs, fs)
            ref = self.get("maintenance", fs, "cp-r")
            scrub = self.get("maintenance", fs, "scrub")
            rebuild = self.get("maintenance", fs, "rebuild")
            written = self.get("maintenance", fs, "rebuild-member")
            if ref:
                self.w(f"| {label}: cp -r just before the rebuild | {fmt(ref)} | 1.00× |")
            for what, v in (("scrub", scrub), ("rebuild", rebuild)):
                if v is not None:
                    self.w(f"| {label} {what} | {fmt(v)} | {v / ref:.2f}× |" if ref else f"| {label} {what} | {fmt(v)} | – |")
            if written is not None:
                self.w(f"| {label} rebuild, written to the new member | {fmt(written)} | – |")
            if rebuild is not None and ref:
                self.check(f"{label}: rebuild ≥ 0.5× cp -r", rebuild / ref >= 0.5,
                           f"{fmt(rebuild)} vs {fmt(ref)} MiB/s = {rebuild / ref:.2f}×")
        self.w()

    def rss(self):
        keys = [(fs, sec) for (s, fs, sec) in self.med if s == "rss"]
        if not keys:
            return
        secs = []
        for _, sec in keys:
            if sec not in secs:
                secs.append(sec)
        self.w("## Daemon peak RSS")
        self.w()
        self.w("VmHWM of the FUSE daemon at the end of each section (a fresh mount per section and round), "
               "the highest over the rounds; MiB.")
        self.w()
        self.w("| filesystem | " + " | ".join(secs) + " |")
        self.w("|---|" + "---|" * len(secs))
        worst = 0.0
        for fs in ordered({fs for fs, _ in keys}):
            cells = []
            for sec in secs:
                vals = self.raw.get(("rss", fs, sec))
                cells.append(fmt(max(vals) / 1024) if vals else "–")
                if vals and fs.startswith("raid"):
                    worst = max(worst, max(vals) / 1024)
            self.w(f"| {FS_LABEL.get(fs, fs)} | " + " | ".join(cells) + " |")
        self.w()
        self.check("raidfs daemon RSS < 128 MiB in every workload", worst < 128, f"highest {worst:.1f} MiB")
        running = {fs: vals for (s, fs, _sec), vals in self.raw.items() if s == "rebuilding"}
        if running:
            self.w("Rebuilding arrays: the rebuild was still running at the end of "
                   + ", ".join(f"{int(sum(v))} of {len(v)} sections on {FS_LABEL.get(fs, fs)}"
                               for fs, v in sorted(running.items())) + ".")
            self.w()

    def space(self):
        tree, large = self.get("space", "data", "tree"), self.get("space", "data", "large")
        rows = [fs for fs in FS_ORDER if self.get("space", fs, "tree")]
        if not rows:
            return
        self.w("## Space")
        self.w()
        self.w(f"du of all member directories, beside the data's own du on the backing "
               f"(source tree: {fmt(tree / 1024)} MiB; large files: {fmt(large / 1024)} MiB).")
        self.w()
        self.w("| array | source tree (MiB) | × the tree | large files (MiB) | × the files |")
        self.w("|---|---|---|---|---|")
        for fs in rows:
            t, l = self.get("space", fs, "tree"), self.get("space", fs, "large")
            self.w(f"| {FS_LABEL.get(fs, fs)} | {fmt(t / 1024)} | {t / tree:.2f}× | {fmt(l / 1024)} | {l / large:.2f}× |")
        self.w()

    def codec(self):
        wls = self.workloads("codec")
        if not wls:
            return
        self.w("## Codec")
        self.w()
        self.w("GB/s of data chunks: RAID 5 (3+1) and RAID 6 (4+2). encode: parity from the data; decode: the "
               "first one (RAID 5) or two (RAID 6) data chunks from the rest. swift: RAIDCore's Codec; c: the same "
               "ISA-L calls from C on the same buffer shapes; memcpy: copying the data chunks once, the physical bound.")
        self.w()
        self.w("| level | op | chunk | swift | c | memcpy | swift / c |")
        self.w("|---|---|---|---|---|---|---|")
        worst = None
        series = collections.defaultdict(list)
        for wl in wls:
            level, op, chunk = wl.split("-")
            if op == "copy":
                continue
            s, c = self.get("codec", "swift", wl), self.get("codec", "c", wl)
            mc = self.get("codec", "memcpy", f"{level}-copy-{chunk}")
            ratio = s / c if s and c else None
            if ratio is not None:
                worst = ratio if worst is None else min(worst, ratio)
            self.w(f"| {level} | {op} | {int(chunk) // 1024} KiB | {fmt(s)} | {fmt(c)} | {fmt(mc)} | "
                   f"{'–' if ratio is None else f'{ratio:.2f}×'} |")
            series[f"{level} {op} swift"].append((int(chunk) // 1024, s))
            series[f"{level} {op} c"].append((int(chunk) // 1024, c))
        self.w()
        self.lines_plot("codec", series, "Parity codec: Swift beside C, same ISA-L calls", "chunk (KiB)", "GB/s of data")
        if worst is not None:
            self.check("codec from Swift ≥ 0.95× ISA-L from C, every cell", worst >= 0.95, f"lowest {worst:.2f}×")

    def write(self):
        m = self.machine
        body = self.lines
        self.lines = []
        self.w("# raidfs benchmark report")
        self.w()
        for k in ("commit", "date", "cpu", "cores", "memory", "kernel", "backing", "rounds", "sizes", "command"):
            if k in m:
                self.w(f"- **{k}**: {'`' + m[k] + '`' if k == 'command' else m[k]}")
        self.w()
        if self.checks:
            self.w("## Targets")
            self.w()
            self.w("| target | holds | figure |")
            self.w("|---|---|---|")
            for what, ok, detail in self.checks:
                self.w(f"| {what} | {'yes' if ok else '**no**'} | {detail} |")
            self.w()
        self.lines += body
        if self.plots:
            self.w("## Plots")
            self.w()
            for p in self.plots:
                self.w(f"![{p}]({p}.png)")
            self.w()
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS_DIR")
    r = Report(sys.argv[1])
    r.fio()
    r.small()
    r.programs()
    r.pgbench()
    r.sweep()
    r.maintenance()
    r.rss()
    r.space()
    r.codec()
    r.write()


if __name__ == "__main__":
    main()
