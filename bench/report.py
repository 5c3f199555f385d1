#!/usr/bin/env python3
"""Turns the bench binary's JSON into docs/benchmarks.md and a PNG chart.

    report.py --results R/results.json [--scaling S/scaling.json] \
              --md docs/benchmarks.md --png docs/benchmarks.png
    report.py --scaling S/scaling.json --md S/scaling.md --png S/scaling.png
    report.py --process-pool R/process_pool.json --md docs/benchmarks.md
              (only the process-pool section of the page changes; with --results it
              becomes part of the full page)

Every comparison is a set of pairs (subject, other) measured in the same rounds. For
each round that has both, the ratio is taken (subject/other when higher is better,
other/subject otherwise, so > 1 always means the subject is better); the report
gives the median of those per-round ratios with their min and max, next to the
medians of the absolute values. Only the standard library is used; the chart is drawn
with gnuplot (or matplotlib when gnuplot is missing).
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

NOISE = 0.15  # differences under this are not resolvable on the 2-core VM


def load(path):
    with open(path) as f:
        return json.load(f)


class Data:
    def __init__(self, d):
        self.d = d
        self.meta = d["meta"]
        self.labels = {r["name"]: r["label"] for r in d["rows"]}
        self.values = {}  # row -> metric -> {round: value}
        self.errors = {}
        for s in d["samples"]:
            if s["error"]:
                self.errors.setdefault(s["row"], []).append(s["error"])
                continue
            for k, v in s["metrics"].items():
                if v is None:
                    continue
                self.values.setdefault(s["row"], {}).setdefault(k, {})[s["round"]] = v

    def series(self, row, metric):
        return self.values.get(row, {}).get(metric, {})

    def has(self, row, metric):
        return bool(self.series(row, metric))

    def median(self, row, metric):
        s = self.series(row, metric)
        return statistics.median(s.values()) if s else float("nan")

    def spread(self, row, metric):
        s = list(self.series(row, metric).values())
        return (min(s), max(s)) if s else (float("nan"), float("nan"))

    def ratios(self, subject, other, metric, higher_better):
        a, b = self.series(subject, metric), self.series(other, metric)
        out = []
        for r in sorted(set(a) & set(b)):
            x, y = a[r], b[r]
            if x <= 0 or y <= 0:
                continue
            out.append(x / y if higher_better else y / x)
        return out


def num(v, unit=""):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    if a >= 1000:
        s = "%.0f" % v
    elif a >= 100:
        s = "%.1f" % v
    elif a >= 10:
        s = "%.2f" % v
    elif a >= 1:
        s = "%.2f" % v
    elif a >= 0.01:
        s = "%.3f" % v
    else:
        s = "%.2g" % v
    return s + ((" " + unit) if unit else "")


def verdict(median, target):
    if target is None or math.isnan(median):
        return ""
    ok = median >= target
    close = abs(median / target - 1) < NOISE
    text = "met" if ok else "**missed**"
    if close:
        text += " (within noise)"
    return text


def comparison_md(data, c):
    lines = ["### " + c["title"], ""]
    metric, unit, hb = c["metric"], c["unit"], c["higher_better"]
    if c["pairs"]:
        lines.append("| subject | vs | subject median | other median | ratio, median [min – max] | target | verdict |")
        lines.append("|---|---|---|---|---|---|---|")
        for p in c["pairs"]:
            s, o = p["subject"], p["other"]
            if not (data.has(s, metric) and data.has(o, metric)):
                continue
            rs = data.ratios(s, o, metric, hb)
            if not rs:
                continue
            med = statistics.median(rs)
            tgt = p["target"]
            lines.append("| %s | %s | %s | %s | **%s** [%s – %s] (%d rounds) | %s | %s |" % (
                data.labels.get(s, s), data.labels.get(o, o) + (" — " + p["note"] if p["note"] else ""),
                num(data.median(s, metric), unit), num(data.median(o, metric), unit),
                num(med), num(min(rs)), num(max(rs)), len(rs),
                ("≥ " + num(tgt)) if tgt is not None else "", verdict(med, tgt)))
        lines.append("")
    if c["abs"]:
        lines.append("| row | median | min – max | target |")
        lines.append("|---|---|---|---|")
        for a in c["abs"]:
            r = a["row"]
            if not data.has(r, metric):
                continue
            med = data.median(r, metric)
            lo, hi = data.spread(r, metric)
            tgt = ""
            if a["op"] and a["target"] is not None:
                ok = med < a["target"] if a["op"] == "<" else med > a["target"]
                tgt = "%s %s: %s" % (a["op"], num(a["target"], unit), "met" if ok else "**missed**")
            extra = []
            for k in ("lines", "bytes", "families"):
                if data.has(r, k):
                    extra.append("%s %s" % (num(data.median(r, k)), k))
            label = data.labels.get(r, r) + ((" (" + ", ".join(extra) + ")") if extra else "")
            lines.append("| %s | %s | %s – %s | %s |" % (label, num(med, unit), num(lo), num(hi), tgt))
        lines.append("")
    if c["note"]:
        lines += ["_" + c["note"] + "_", ""]
    return lines


def scrape_total_md(data):
    out = []
    for k in (1, 10, 100):
        c, s = "scrape_collect_%d" % k, "scrape_serialize_%d" % k
        if data.has(c, "ms") and data.has(s, "ms"):
            tot = data.median(c, "ms") + data.median(s, "ms")
            share = 100 * data.median(s, "ms") / tot if tot > 0 else float("nan")
            lines = data.median(s, "lines")
            per_line = data.median(s, "ms") * 1e3 / lines if lines else float("nan")
            tgt = ""
            if k == 100:
                tgt = " — target < 10 ms: %s" % ("met" if tot < 10 else "**missed**")
            out.append("- %d executor(s): collect + serialize %s, TextSerializer %.0f %% of it (%s µs per line)"
                       % (k, num(tot, "ms"), share, num(per_line)))
            w = "scrape_write_text_%d" % k
            if data.has(w, "ms"):
                fast = data.median(c, "ms") + data.median(w, "ms")
                if k == 100:
                    tgt = " — target < 10 ms: %s" % ("met" if fast < 10 else "**missed**")
                out.append("  - with write_text (fmt): collect + serialize %s%s"
                           % (num(fast, "ms"), tgt))
            elif tgt:
                out[-1] += tgt
    return out + ([""] if out else [])


def table_md(t):
    lines = ["### " + t["title"], "", "| " + " | ".join(t["columns"]) + " |",
             "|" + "---|" * len(t["columns"])]
    for r in t["rows"]:
        lines.append("| " + " | ".join(r) + " |")
    lines.append("")
    if t["note"]:
        lines += ["_" + t["note"] + "_", ""]
    return lines


def machine_md(meta, what):
    return [
        "| %s | |" % what, "|---|---|",
        "| date | %s |" % meta.get("date", "?"),
        "| machine | %s CPUs, %s, %s |" % (meta.get("nproc", "?"), meta.get("cpu_model", "?"), meta.get("kernel", "?")),
        "| compiler | GCC %s, Release |" % meta.get("compiler", "?"),
        "| rounds | %s interleaved rounds, %s workers unless stated |" % (meta.get("rounds", "?"), meta.get("workers", "?")),
        "| sizes | %s |" % meta.get("sizes", "?"),
        "| hypervisor steal during the run | %s %% |" % meta.get("steal_pct", "?"),
        "| load average at start / end | %s / %s |" % (meta.get("loadavg_start", "?"), meta.get("loadavg_end", "?")),
        "| run time | %s s |" % meta.get("duration_s", "?"),
        "| ThreadPoolExecutor fire-and-forget via | %s |" % meta.get("fire_and_forget", "?"),
        "| uninstrumented variant | %s |" % meta.get("uninstrumented", "?"),
        "",
    ]


METHOD = """\
**How to read this.** Every row runs once per round; rows compared with each other run back to
back, and their order rotates from round to round (A B C, B C A, …). A ratio is computed per
round from the two rows of that round, then the median of those per-round ratios is reported
with its min and max. Ratios are oriented so that **> 1 means the subject (usually
ThreadPoolExecutor) is better**: subject ÷ other for throughputs and efficiencies,
other ÷ subject for costs and latencies. The machine is a noisy 2-vCPU KVM guest shared with
other work (hypervisor steal of 9–28 % was seen during runs): **differences under ~15 % are not
resolvable**, and absolute numbers are 4–5× slower than bare metal. Compare only within one run.
A load average well above the CPU count means other processes took CPU time from the run:
the 10 µs efficiency rows then measure the CPU share the bench got more than the pools.
"""


def targets_md(data):
    out = ["## Targets at a glance", "",
           "| target | measured (median [min – max]) | verdict |", "|---|---|---|"]
    for c in data.d["comparisons"]:
        for p in c["pairs"]:
            if p["target"] is None:
                continue
            rs = data.ratios(p["subject"], p["other"], c["metric"], c["higher_better"])
            if not rs:
                continue
            med = statistics.median(rs)
            out.append("| %s: %s vs %s ≥ %s | %s [%s – %s] | %s |" % (
                c["id"], data.labels.get(p["subject"], p["subject"]), data.labels.get(p["other"], p["other"]),
                num(p["target"]), num(med), num(min(rs)), num(max(rs)), verdict(med, p["target"])))
        for a in c["abs"]:
            if not a["op"] or a["target"] is None or not data.has(a["row"], c["metric"]):
                continue
            med = data.median(a["row"], c["metric"])
            ok = med < a["target"] if a["op"] == "<" else med > a["target"]
            out.append("| %s: %s %s %s | %s | %s |" % (
                c["id"], data.labels.get(a["row"], a["row"]), a["op"], num(a["target"], c["unit"]),
                num(med, c["unit"]), "met" if ok else "**missed**"))
    out.append("")
    return out


# ---------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------
POOL_SUFFIXES = ["ours", "nometrics", "ref", "ref_shards", "ref_obvious", "asio", "tbb", "python"]
POOL_NAMES = {"ours": "ours", "nometrics": "ours, no metrics", "ref": "mutex+cv ref",
              "ref_shards": "ref + shards", "ref_obvious": "ref + prom-cpp", "asio": "asio",
              "tbb": "oneTBB", "python": "Python"}


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def chart_panels(data, tmp, scaling=None):
    """Returns a list of gnuplot panel scripts (each a string) and writes their data."""
    panels = []
    # 1. Throughput per pool: ff, prod, fut (median with min/max).
    rows = []
    for suf in POOL_SUFFIXES:
        vals = []
        for blk in ("ff", "prod", "fut"):
            r = "%s_%s" % (blk, suf)
            if data.has(r, "mtps"):
                lo, hi = data.spread(r, "mtps")
                vals += [data.median(r, "mtps"), lo, hi]
            else:
                vals += [float("nan")] * 3
        if not all(math.isnan(v) for v in vals):
            rows.append('"%s" %s' % (POOL_NAMES[suf], " ".join("%g" % v if not math.isnan(v) else "NaN" for v in vals)))
    if rows:
        write(os.path.join(tmp, "tp.dat"), "\n".join(rows) + "\n")
        panels.append("""
set title "Throughput, %s workers (M tasks/s; bars: min-max over rounds)"
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set xtics rotate by -30 nomirror
set ylabel "M tasks/s"
set yrange [0:*]
set key top right
plot "{tmp}/tp.dat" using 2:3:4:xtic(1) title "1 M fire-and-forget", \\
     "" using 5:6:7 title "4 producers", \\
     "" using 8:9:10 title "with futures"
unset style
set style data lines
set xtics norotate
""" % data.meta.get("workers", "2"))
    # 2. Paired ratios ours vs peers.
    rows = []
    for blk, title in (("ff", "fire-and-forget"), ("prod", "4 producers"), ("fut", "futures")):
        for suf in ("nometrics", "ref", "asio", "tbb"):
            rs = data.ratios(blk + "_ours", "%s_%s" % (blk, suf), "mtps", True)
            if rs:
                rows.append('"%s: %s" %g %g %g' % (title, POOL_NAMES[suf], statistics.median(rs), min(rs), max(rs)))
    if rows:
        write(os.path.join(tmp, "ratio.dat"), "\n".join(rows) + "\n")
        panels.append("""
set title "ThreadPoolExecutor / peer, paired per round (>1: ours faster)"
set style fill solid 0.6 border -1
set boxwidth 0.6
set xtics rotate by -40 nomirror font ",8"
set logscale y
set yrange [0.05:*]
set ylabel "ratio (log)"
unset key
plot "{tmp}/ratio.dat" using 0:2:xtic(1) with boxes lc rgb "#4477aa", \\
     "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0, \\
     1 with lines dt 2 lc rgb "red", 0.85 with lines dt 3 lc rgb "gray"
unset logscale y
set xtics norotate font ""
""")
    # 3. Metric layer vs threads.
    rows = []
    for t in (1, 2, 4, 8, 16):
        o, p = "metric_ours_t%d" % t, "metric_obvious_t%d" % t
        if data.has(o, "ns") and data.has(p, "ns"):
            rows.append("%d %g %g %g %g" % (t, data.median(o, "ns"), data.median(p, "ns"),
                                            data.median(o, "cpu_ns"), data.median(p, "cpu_ns")))
    if rows:
        write(os.path.join(tmp, "metric.dat"), "\n".join(rows) + "\n")
        panels.append("""
set title "Metric updates per task (clock excluded)"
set logscale y
set xlabel "threads on one executor"
set ylabel "ns per task"
set xtics (1,2,4,8,16)
set key top left
plot "{tmp}/metric.dat" using 1:2 with linespoints lw 2 title "ours, wall/thread", \\
     "" using 1:4 with linespoints dt 2 title "ours, CPU", \\
     "" using 1:3 with linespoints lw 2 title "prometheus-cpp, wall/thread", \\
     "" using 1:5 with linespoints dt 2 title "prometheus-cpp, CPU"
unset logscale y
unset xlabel
set xtics autofreq
""")
    # 4. Round trip.
    rows = []
    for suf in POOL_SUFFIXES:
        r = "rtt_" + suf
        if data.has(r, "p50_us"):
            rows.append('"%s" %g %g' % (POOL_NAMES[suf], data.median(r, "p50_us"), data.median(r, "p99_us")))
    if rows:
        write(os.path.join(tmp, "rtt.dat"), "\n".join(rows) + "\n")
        panels.append("""
set title "One-task round trip (µs, median over rounds)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.7 border -1
set logscale y
set xtics rotate by -30 nomirror
set ylabel "µs"
set yrange [*:*]
set key top left
plot "{tmp}/rtt.dat" using 2:xtic(1) title "p50", "" using 3 title "p99"
unset logscale y
unset style
set style data lines
set xtics norotate
""")
    # 5. Scrape.
    rows = []
    for k in (1, 10, 100):
        c, s, h = "scrape_collect_%d" % k, "scrape_serialize_%d" % k, "scrape_http_%d" % k
        w = "scrape_write_text_%d" % k
        if data.has(c, "ms"):
            fast = data.median(w, "ms") if data.has(w, "ms") else float("nan")
            rows.append("%d %g %g %g %g" % (k, data.median(c, "ms"), data.median(s, "ms"),
                                             data.median(h, "ms"), fast))
    if rows:
        write(os.path.join(tmp, "scrape.dat"), "\n".join(rows) + "\n")
        panels.append("""
set title "Scrape cost"
set logscale xy
set xlabel "executors (2 workers each)"
set ylabel "ms per scrape"
set key top left
plot "{tmp}/scrape.dat" using 1:2 with linespoints lw 2 title "fold + collect", \\
     "" using 1:3 with linespoints lw 2 title "TextSerializer", \\
     "" using 1:4 with linespoints lw 2 title "HTTP GET (all of it)", \\
     "" using 1:5 with linespoints lw 2 title "write\\_text (fmt)", \\
     10 with lines dt 2 lc rgb "red" title "10 ms"
unset logscale xy
unset xlabel
""")
    # 6. Busy tasks.
    rows = []
    for suf in POOL_SUFFIXES:
        r = "busy_" + suf
        if data.has(r, "efficiency_pct"):
            lo, hi = data.spread(r, "efficiency_pct")
            rows.append('"%s" %g %g %g' % (POOL_NAMES[suf], data.median(r, "efficiency_pct"), lo, hi))
    if rows:
        write(os.path.join(tmp, "busy.dat"), "\n".join(rows) + "\n")
        panels.append("""
set title "10 µs tasks: % of ideal (bars: min-max)"
set style fill solid 0.6 border -1
set boxwidth 0.6
set xtics rotate by -30 nomirror
set yrange [0:100]
set ylabel "%"
unset key
plot "{tmp}/busy.dat" using 0:2:xtic(1) with boxes lc rgb "#228833", \\
     "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0, 78 with lines dt 2 lc rgb "red"
set xtics norotate
set yrange [*:*]
""")
    if scaling is not None:
        panels += scaling_panels(scaling, tmp)
    return panels


def scaling_threads(data):
    ts = set()
    for r in data.labels:
        if r.startswith("metric_ours_t"):
            ts.add(int(r[len("metric_ours_t"):]))
    return sorted(ts)


def scaling_panels(data, tmp):
    panels = []
    ts = scaling_threads(data)
    rows = []
    for t in ts:
        o, p = "metric_ours_t%d" % t, "metric_obvious_t%d" % t
        rows.append("%d %g %g %g %g" % (t, data.median(o, "ns"), data.median(p, "ns"),
                                        data.median(o, "cpu_ns"), data.median(p, "cpu_ns")))
    write(os.path.join(tmp, "smetric.dat"), "\n".join(rows) + "\n")
    panels.append("""
set title "Scaling (%s CPUs): metric updates per task"
set logscale xy
set xrange [0.8:20]
set xtics (1,2,4,8,16)
set xlabel "threads"
set ylabel "ns per task"
set key top left
plot "{tmp}/smetric.dat" using 1:4 with linespoints lw 2 title "ours, CPU ns", \\
     "" using 1:2 with linespoints dt 2 title "ours, wall/thread", \\
     "" using 1:5 with linespoints lw 2 title "prometheus-cpp, CPU ns", \\
     "" using 1:3 with linespoints dt 2 title "prometheus-cpp, wall/thread"
unset logscale xy
unset xlabel
""" % data.meta.get("nproc", "?"))
    cols = [s for s in POOL_SUFFIXES if any(data.has("pool_t%d_%s" % (t, s), "mtps") for t in ts)]
    rows = []
    for t in ts:
        rows.append("%d %s" % (t, " ".join("%g" % data.median("pool_t%d_%s" % (t, s), "mtps")
                                           if data.has("pool_t%d_%s" % (t, s), "mtps") else "NaN" for s in cols)))
    write(os.path.join(tmp, "spool.dat"), "\n".join(rows) + "\n")
    plots = ", ".join('"{tmp}/spool.dat" using 1:%d with linespoints lw 2 title "%s"' % (i + 2, POOL_NAMES[s])
                      for i, s in enumerate(cols))
    panels.append("""
set title "Scaling: N workers + N producers, empty tasks"
set logscale x
set xrange [0.8:20]
set xtics (1,2,4,8,16)
set xlabel "N"
set ylabel "M tasks/s"
set yrange [0:*]
set key top left
plot %s
unset logscale x
unset xlabel
set yrange [*:*]
""" % plots)
    return panels


def draw(panels, png, tmp):
    if not panels:
        return False
    if shutil.which("gnuplot") is None:
        print("report.py: gnuplot not found; no chart (apt-get install gnuplot-nox)", file=sys.stderr)
        return False
    n = len(panels)
    cols = 3 if n > 4 else 2
    rows_ = (n + cols - 1) // cols
    script = ['set terminal pngcairo noenhanced size %d,%d font "Sans,10"' % (600 * cols, 430 * rows_),
              'set output "%s"' % png,
              "set grid ytics",
              "set multiplot layout %d,%d" % (rows_, cols)]
    for p in panels:
        script.append(p.replace("{tmp}", tmp))
        script.append("reset\nset grid ytics")
    script.append("unset multiplot")
    path = os.path.join(tmp, "chart.gp")
    write(path, "\n".join(script) + "\n")
    r = subprocess.run(["gnuplot", path], capture_output=True, text=True)
    if r.returncode != 0:
        print("report.py: gnuplot failed:\n" + r.stderr, file=sys.stderr)
        return False
    return True


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------
def scaling_md(sdata, heading="##"):
    ts = scaling_threads(sdata)
    try:
        cpus = int(sdata.meta.get("nproc", "0"))
    except ValueError:
        cpus = 0
    oversubscribed = cpus > 0 and ts and max(ts) > cpus
    title = " Scaling past 2 cores" if not oversubscribed else \
        " Scaling from 1 to %d threads on %d CPUs (oversubscribed)" % (max(ts), cpus)
    out = [heading + title, "",
           "Produced by `scripts/bench.sh --scaling OUTDIR` on the machine below: the metric layer "
           "with N threads on one executor, and every pool with N workers fed by N producer "
           "threads (%s empty tasks in all)." % sdata.meta.get("sizes", "").split("scaling ")[-1], ""]
    if oversubscribed:
        out += ["**This run had %d CPUs, fewer than its %d threads.** Past %d threads they take "
                "turns on the same cores, so wall time per task per thread grows with N by "
                "construction (N threads share %d cores) and says nothing about contention; the "
                "CPU time per task is what shows whether the metric cost stays flat. Contention "
                "between threads that really run at once (shared cache lines, the queue lock) "
                "only shows on a machine with as many cores as threads: run the same command "
                "there and regenerate this page with `--report-only --scaling-json`."
                % (cpus, max(ts), cpus, cpus), ""]
    out += machine_md(sdata.meta, "scaling run")
    out += ["| threads | ours: wall ns/task/thread | ours: CPU ns/task | prometheus-cpp: wall | prometheus-cpp: CPU | prometheus-cpp ÷ ours (paired, wall) |",
            "|---|---|---|---|---|---|"]
    for t in ts:
        o, p = "metric_ours_t%d" % t, "metric_obvious_t%d" % t
        rs = sdata.ratios(o, p, "ns", False)
        out.append("| %d | %s | %s | %s | %s | %s |" % (
            t, num(sdata.median(o, "ns")), num(sdata.median(o, "cpu_ns")), num(sdata.median(p, "ns")),
            num(sdata.median(p, "cpu_ns")),
            ("%s [%s – %s]" % (num(statistics.median(rs)), num(min(rs)), num(max(rs)))) if rs else "n/a"))
    out.append("")
    cols = [s for s in POOL_SUFFIXES if any(sdata.has("pool_t%d_%s" % (t, s), "mtps") for t in ts)]
    out += ["| N | " + " | ".join(POOL_NAMES[s] + " (M/s)" for s in cols) + " | " +
            " | ".join("ours ÷ " + POOL_NAMES[s] for s in cols if s != "ours") + " |",
            "|---|" + "---|" * (2 * len(cols) - 1)]
    for t in ts:
        cells = [num(sdata.median("pool_t%d_%s" % (t, s), "mtps")) for s in cols]
        rat = []
        for s in cols:
            if s == "ours":
                continue
            rs = sdata.ratios("pool_t%d_ours" % t, "pool_t%d_%s" % (t, s), "mtps", True)
            rat.append(("%s [%s – %s]" % (num(statistics.median(rs)), num(min(rs)), num(max(rs)))) if rs else "n/a")
        out.append("| %d | %s | %s |" % (t, " | ".join(cells), " | ".join(rat)))
    out.append("")
    return out


PP_BEGIN = "<!-- process-pool:begin -->"
PP_END = "<!-- process-pool:end -->"
# (row, C++ benchmark name prefix, Python workload, target ratio vs Python)
PP_ROWS = [
    ("submit one by one, then wait", "BM_SubmitThenWait", "pp_submit", 40.0),
    ("map, chunksize=100", "BM_MapChunked", "pp_map", 15.0),
]
# The floor under each row: the same bytes over the same sockets with no library
# (process_pool_bench.cpp, RawEcho), measured in the same rounds.
PP_FLOORS = [
    ("submit one by one, then wait", "BM_SubmitThenWait", "BM_RawFloorSubmit"),
    ("map, chunksize=100", "BM_MapChunked", "BM_RawFloorMap"),
]


def process_pool_md(pp):
    """The process-pool section: ProcessPoolExecutor vs Python's, per-round ratios.

    `pp` is what scripts/bench.sh assembles: {"n", "workers", "rounds": [{"cpp": {name:
    items/s}, "python": {method: {workload: k items/s}}}], "machine": {...}}."""
    rounds = pp["rounds"]
    out = [PP_BEGIN, "## ProcessPoolExecutor vs Python's ProcessPoolExecutor", "",
           "%d workers, %d no-op tasks (`int noop(int)` / `def ident(i)`), results read back; %d "
           "interleaved rounds (each round runs every row once); median, with the range over rounds "
           "in brackets. Ratios are paired: C++ over Python within each round, then the median. "
           "Python workers are started before its clock starts; the targets apply to the lower "
           "of the two ratios. Rows: `bench/process_pool_bench.cpp` "
           "(`executor_exporter_process_pool_bench`) and `bench/python_peer.py --workload pp_submit|pp_map "
           "--start-method fork|forkserver`. Reproduce: `scripts/bench.sh --process-pool`."
           % (pp["workers"], pp["n"], len(rounds)), ""]
    m = pp.get("machine", {})
    if m:
        out += ["Machine: %s; %s; Python %s." % (m.get("cpu", "?"), m.get("load", "?"),
                                                  m.get("python", "?")), ""]
    if pp.get("note"):
        out += ["> " + pp["note"], ""]
    out += ["| workload | C++ (k items/s) | Python fork (k/s) | Python forkserver (k/s) | C++ / fork | C++ / forkserver | target (lower ratio) |",
            "|---|---|---|---|---|---|---|"]

    def med(values):
        v = sorted(values)
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

    def cell(values, unit=""):
        if not values:
            return "n/a"
        text = num(med(values), unit)
        if len(values) > 1:
            text += " [%s-%s]" % (num(min(values)), num(max(values)))
        return text

    for label, cpp_name, workload, target in PP_ROWS:
        cpp = [r["cpp"][cpp_name] / 1e3 for r in rounds if cpp_name in r.get("cpp", {})]
        py = {meth: [r["python"][meth][workload] for r in rounds
                     if workload in r.get("python", {}).get(meth, {})]
              for meth in ("fork", "forkserver")}
        ratios = {}
        for meth in ("fork", "forkserver"):
            ratios[meth] = [r["cpp"][cpp_name] / 1e3 / r["python"][meth][workload] for r in rounds
                            if cpp_name in r.get("cpp", {}) and
                            workload in r.get("python", {}).get(meth, {})]
        worst = min((med(v) for v in ratios.values() if v), default=float("nan"))
        out.append("| %s | %s | %s | %s | %s | %s | >= %gx: %s |" % (
            label, cell(cpp), cell(py["fork"]), cell(py["forkserver"]),
            cell(ratios["fork"], "x"), cell(ratios["forkserver"], "x"), target,
            verdict(worst, target) or "n/a"))
    floor_rows = []
    for label, cpp_name, floor_name in PP_FLOORS:
        have = [r for r in rounds if cpp_name in r.get("cpp", {}) and floor_name in r.get("cpp", {})]
        if not have:
            continue
        floor = [r["cpp"][floor_name] / 1e3 for r in have]
        share = [r["cpp"][cpp_name] / r["cpp"][floor_name] * 100 for r in have]
        floor_rows.append("| %s | %s | %s |" % (label, cell(floor), cell(share, " %")))
    if floor_rows:
        out += ["", "The floor: the same bytes (one task frame out, one result frame back, per task "
                "or per chunk) between the parent and two forked echo processes over the same "
                "kind of socket, the pool's window of 32 frames per worker, one send per answer "
                "in the child, and nothing else (no encoding, futures, threads or metrics). It "
                "is what this design can reach on this machine; the process pool's share of it "
                "is the room left.", "",
                "| workload | floor (k items/s) | C++ pool / floor |", "|---|---|---|"] + floor_rows
    extra = [(name, key) for name, key in (("round trip (one task, submit + get)", "BM_RoundTrip"),
                                           ("round trip floor (one frame there and back)",
                                            "BM_RawFloorRoundTrip"),
                                           ("worker respawn (crash + next task)", "BM_Respawn"))]
    rows = []
    for label, key in extra:
        v = [r["cpp_time_us"][key] for r in rounds if key in r.get("cpp_time_us", {})]
        if v:
            rows.append("| %s | %s |" % (label, cell(v, "us")))
    if rows:
        out += ["", "| C++ only | time |", "|---|---|"] + rows
    out += ["", PP_END, ""]
    return out


def splice_process_pool(text, section):
    """Replaces the process-pool section of an existing page (or inserts it before the
    scaling section, or at the end)."""
    block = "\n".join(section)
    if PP_BEGIN in text and PP_END in text:
        head, rest = text.split(PP_BEGIN, 1)
        tail = rest.split(PP_END, 1)[1].lstrip("\n")
        return head + block + tail
    marker = "## Scaling past 2 cores"
    if marker in text:
        head, tail = text.split(marker, 1)
        return head + block + marker + tail
    return text.rstrip("\n") + "\n\n" + block


def main_md(data, sdata, png_name, pp=None):
    m = data.meta
    out = ["# Benchmarks", "",
           "<!-- Generated by scripts/bench.sh (bench/report.py); edit those, not this file. -->", "",
           "Reproduce: `scripts/bench.sh` (installs the peers and gnuplot, builds `bench/` in "
           "`build-bench/`, runs the suite, rewrites this page and `docs/%s`). " % png_name +
           "Smoke run (every row once, tiny sizes): `scripts/bench.sh --smoke` (or the binary with `--smoke`). "
           "Scaling run: `scripts/bench.sh --scaling OUTDIR`.", ""]
    if m.get("mode") != "full":
        out += ["> **This page was produced by a `%s` run: the numbers are not meaningful.**" % m.get("mode"), ""]
    out += machine_md(m, "this run")
    out += [METHOD, "", "![benchmarks](%s)" % png_name, ""]
    out += targets_md(data)
    out += ["## Results", ""]
    for c in data.d["comparisons"]:
        out += comparison_md(data, c)
        if c["id"] == "scrape":
            out += scrape_total_md(data)
    out += ["## Measured once", ""]
    for t in data.d["tables"]:
        out += table_md(t)
    if data.errors:
        out += ["## Rows that failed", ""]
        for r, errs in sorted(data.errors.items()):
            out.append("- `%s`: %s" % (r, errs[0]))
        out.append("")
    if pp is not None:
        out += process_pool_md(pp)
    if sdata is not None:
        out += scaling_md(sdata)
    else:
        out += ["## Scaling past 2 cores", "",
                "Not measured yet: run `scripts/bench.sh --scaling OUTDIR` on a machine with many "
                "cores, then `scripts/bench.sh --report-only --scaling-json OUTDIR/scaling.json` "
                "to add its table and curves here.", ""]
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
    if os.path.exists(notes):
        out += [open(notes).read().rstrip(), ""]
    out += ["## Rows", "",
            "- **ThreadPoolExecutor (instrumented)**: the pool as shipped, wait and run histograms on.",
            "- **metrics compiled out**: " + m.get("uninstrumented", "?") + ".",
            "- **timing 1 in 64 tasks**: ThreadPoolExecutor with `ExporterOptions::timing_sample_rate = 64`: "
            "every task counted, about 1 in 64 timed into the histograms.",
            "- **mutex+condvar+deque reference**: `bench/reference_pool.hpp`, `std::function` queue, "
            "`notify_one` per submit, futures via `shared_ptr<packaged_task>`.",
            "- **reference + our shards / + prometheus-cpp per task**: the same reference pool with "
            "three clock reads per task and either this library's ExecutorExporter or the obvious "
            "prometheus-cpp Counter/Gauge/Histogram updates (2 counters, 4 gauge updates, 2 "
            "histogram observations per task).",
            "- **boost::asio::thread_pool**: `post`; futures through `std::packaged_task`.",
            "- **oneTBB**: `task_arena` with N worker slots plus one per producer, one `task_group`; "
            "the waiting thread helps run tasks (TBB's model).",
            "- **Python**: `bench/python_peer.py`, CPython's ThreadPoolExecutor; fewer tasks, same units.",
            ""]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results")
    ap.add_argument("--scaling")
    ap.add_argument("--process-pool", help="process-pool rounds assembled by scripts/bench.sh")
    ap.add_argument("--md", required=True)
    ap.add_argument("--png")
    args = ap.parse_args()
    data = Data(load(args.results)) if args.results else None
    sdata = Data(load(args.scaling)) if args.scaling else None
    pp = load(args.process_pool) if args.process_pool else None
    if data is None and sdata is None:
        if pp is None:
            ap.error("give --results, --scaling and/or --process-pool")
        # Only the process-pool section of an existing page changes.
        text = open(args.md).read() if os.path.exists(args.md) else "# Benchmarks\n"
        write(args.md, splice_process_pool(text, process_pool_md(pp)))
        print("wrote the process-pool section of %s" % args.md)
        return
    if not args.png:
        ap.error("--png is required with --results or --scaling")
    with tempfile.TemporaryDirectory() as tmp:
        if data is not None:
            panels = chart_panels(data, tmp, sdata)
            text = main_md(data, sdata, os.path.basename(args.png), pp)
        else:
            panels = scaling_panels(sdata, tmp)
            text = "\n".join(["# Scaling run", "", "![scaling](%s)" % os.path.basename(args.png), ""] +
                             scaling_md(sdata)) + "\n"
        drew = draw(panels, os.path.abspath(args.png), tmp)
    write(args.md, text)
    print("wrote %s%s" % (args.md, (" and " + args.png) if drew else ""))


if __name__ == "__main__":
    main()
