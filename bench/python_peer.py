#!/usr/bin/env python3
"""The Python reference row of the benchmark suite.

Runs one workload on concurrent.futures.ThreadPoolExecutor and prints one JSON object
with the same keys and units as the C++ rows:
  ff         n empty fire-and-forget tasks from one thread      {"mtps": M tasks/s}
  futures    n tasks with futures, every result read            {"mtps": ...}
  producers  `producers` threads submitting n tasks in all      {"mtps": ...}
  rtt        one task at a time, submit + result()              {"p50_us": ..., "p99_us": ...}
  busy       n tasks of 10 µs busy work                          {"efficiency_pct": % of n*10µs/workers}
and one workload on concurrent.futures.ProcessPoolExecutor, with
--start-method fork or forkserver:
  pp_submit  n no-op tasks submitted one by one, then every result read   {"ktps": k tasks/s}
  pp_map     map(noop, range(n), chunksize=--chunksize), every result read {"ktps": k items/s}
The clock starts after the pool is built (and, for rtt, warmed up) and stops when the
last task finished (shutdown(wait=True) or the last result()).

    python3 bench/python_peer.py --workload ff --n 5000 --workers 2
"""

import argparse
import json
import threading
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def noop():
    return None


def ident(i):
    return i


def spin(ns):
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def fire_and_forget(n, workers, _producers):
    pool = ThreadPoolExecutor(max_workers=workers)
    t0 = time.perf_counter()
    for _ in range(n):
        pool.submit(noop)
    pool.shutdown(wait=True)
    return {"mtps": n / (time.perf_counter() - t0) / 1e6}


def with_futures(n, workers, _producers):
    pool = ThreadPoolExecutor(max_workers=workers)
    t0 = time.perf_counter()
    futures = [pool.submit(ident, i) for i in range(n)]
    total = sum(f.result() for f in futures)
    elapsed = time.perf_counter() - t0
    pool.shutdown(wait=True)
    if total != n * (n - 1) // 2:
        raise SystemExit("futures: wrong results")
    return {"mtps": n / elapsed / 1e6}


def many_producers(n, workers, producers):
    pool = ThreadPoolExecutor(max_workers=workers)
    each = n // producers
    go = threading.Event()

    def produce():
        go.wait()
        for _ in range(each):
            pool.submit(noop)

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    pool.shutdown(wait=True)
    return {"mtps": each * producers / (time.perf_counter() - t0) / 1e6}


def percentile(values, p):
    values = sorted(values)
    return values[int(p * (len(values) - 1) + 0.5)]


def round_trip(n, workers, _producers):
    pool = ThreadPoolExecutor(max_workers=workers)
    for _ in range(20):
        pool.submit(noop).result()
    us = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        pool.submit(noop).result()
        us.append((time.perf_counter_ns() - t0) / 1e3)
    pool.shutdown(wait=True)
    return {"p50_us": percentile(us, 0.50), "p99_us": percentile(us, 0.99)}


def busy(n, workers, _producers, task_ns=10_000):
    pool = ThreadPoolExecutor(max_workers=workers)
    t0 = time.perf_counter()
    for _ in range(n):
        pool.submit(spin, task_ns)
    pool.shutdown(wait=True)
    elapsed = time.perf_counter() - t0
    ideal = n * task_ns * 1e-9 / workers
    return {"efficiency_pct": 100.0 * ideal / elapsed}


def process_pool(workers, start_method):
    pool = ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context(start_method))
    # Start every worker before the clock starts (Python spawns them on demand).
    list(pool.map(ident, range(4 * workers)))
    return pool


def pp_submit(n, workers, _producers, start_method="fork", _chunksize=1):
    pool = process_pool(workers, start_method)
    t0 = time.perf_counter()
    futures = [pool.submit(ident, i) for i in range(n)]
    total = sum(f.result() for f in futures)
    elapsed = time.perf_counter() - t0
    pool.shutdown(wait=True)
    if total != n * (n - 1) // 2:
        raise SystemExit("pp_submit: wrong results")
    return {"ktps": n / elapsed / 1e3}


def pp_map(n, workers, _producers, start_method="fork", chunksize=100):
    pool = process_pool(workers, start_method)
    t0 = time.perf_counter()
    total = sum(pool.map(ident, range(n), chunksize=chunksize))
    elapsed = time.perf_counter() - t0
    pool.shutdown(wait=True)
    if total != n * (n - 1) // 2:
        raise SystemExit("pp_map: wrong results")
    return {"ktps": n / elapsed / 1e3}


PROCESS_WORKLOADS = {
    "pp_submit": pp_submit,
    "pp_map": pp_map,
}

WORKLOADS = {
    "ff": fire_and_forget,
    "futures": with_futures,
    "producers": many_producers,
    "rtt": round_trip,
    "busy": busy,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS) + sorted(PROCESS_WORKLOADS),
                    required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--start-method", choices=["fork", "forkserver"], default="fork")
    ap.add_argument("--chunksize", type=int, default=100)
    args = ap.parse_args()
    if args.workload in PROCESS_WORKLOADS:
        result = PROCESS_WORKLOADS[args.workload](args.n, args.workers, 1, args.start_method,
                                                  args.chunksize)
    else:
        result = WORKLOADS[args.workload](args.n, args.workers, max(1, args.producers))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
