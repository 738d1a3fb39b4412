#!/usr/bin/python3
"""A/B comparison of two ferrocorn binaries (for example before and after a
change), built on bench.py's helpers.

    /usr/bin/python3 bench/ab.py --a /tmp/ferrocorn-old --b target/release/ferrocorn
    /usr/bin/python3 bench/ab.py --a OLD --b NEW --workloads hello --classes gthread \\
        --threads 4 --wrk-threads 1 --connections 50 --rounds 5
    /usr/bin/python3 bench/ab.py --a OLD --b NEW --callgrind 2000 --workloads hello
    /usr/bin/python3 bench/ab.py --a OLD --b NEW --classes asgi \
        --workloads asgi-hello,asgi-cpu --wrk-threads 1 --connections 50

For every round, workload and worker class (sync, gthread; asgi with the
asgi-* workloads), it runs A and B
back to back (B first in every other round, so slow drift of the machine
lands on both) with bench.py's run_one: fresh port, start, check the
response, warm up, measure with wrk, stop.  Reported per workload and
class: the median req/s of each binary and the ratio B/A, and the median
worker CPU per request: utime+stime of the worker processes (the master's
direct children) from /proc/PID/stat before and after the measured run,
divided by the requests wrk counted.  CPU per request is far less
sensitive than req/s to other work on the machine; prefer it.

With --callgrind N, instead of the wrk rounds, each binary runs with one
worker under valgrind --tool=callgrind for a fixed number of requests, and
the worker's instructions (user space only) per request are reported.  See
bench/README.md.
"""

import argparse
import copy
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import shutil
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench.py sits next to this file)

DEFAULT_WORKLOADS = "hello,flask,upload,download"
CLASSES = ["sync", "gthread", "asgi"]
DEFAULT_CLASSES = "sync,gthread"

# The workloads for --classes asgi (the WSGI ones for the other classes).
ASGI_WORKLOADS = {
    "asgi-hello": B.Workload(
        "asgi-hello", "apps.asgi_hello:app", "/", 50, 0,
        check=lambda status, headers, body: (
            None if body == b"Hello, World!" else "unexpected body %r" % body[:80]),
        description="ASGI hello world (apps/asgi_hello.py)"),
    "asgi-cpu": B.Workload(
        "asgi-cpu", "apps.asgi_cpu:app", "/", 50, 0,
        description="ASGI app computing ~0.3 ms per request (apps/asgi_cpu.py)"),
}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/ab.py",
        description="Compare two ferrocorn binaries, alternating them.")
    p.add_argument("--a", required=True, help="ferrocorn binary A (baseline)")
    p.add_argument("--b", required=True, help="ferrocorn binary B")
    p.add_argument("--a-label", default="A")
    p.add_argument("--b-label", default="B")
    p.add_argument("--rounds", type=int, default=5, help="default 5")
    p.add_argument("--duration", type=int, default=5,
                   help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=int, default=1,
                   help="warm-up seconds per run (default 1)")
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS,
                   help="comma list from: %s (default %s)" % (
                       ",".join(B.WORKLOAD_ORDER + B.EXTRA_WORKLOADS),
                       DEFAULT_WORKLOADS))
    p.add_argument("--classes", default=DEFAULT_CLASSES,
                   help="worker classes, comma list from %s (default %s); "
                        "asgi runs the asgi-* workloads, the others the "
                        "WSGI ones" % (",".join(CLASSES), DEFAULT_CLASSES))
    p.add_argument("--workers", type=int, default=2, help="default 2")
    p.add_argument("--threads", type=int, default=0,
                   help="--threads for gthread (default: per workload, "
                        "as in bench.py)")
    p.add_argument("--connections", type=int, default=0,
                   help="wrk -c for every workload (default: per workload)")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk -t")
    p.add_argument("--wrk-timeout", type=int, default=10)
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--venv", default=B.DEFAULT_VENV)
    p.add_argument("--out-dir", default=B.DEFAULT_OUT)
    p.add_argument("--callgrind", type=int, default=0, metavar="N",
                   help="instead of wrk rounds: instructions per request "
                        "under callgrind, from runs of N and 2N requests")
    p.add_argument("--callgrind-connections", type=int, default=4,
                   help="keep-alive connections of the callgrind client "
                        "(default 4)")
    args = p.parse_args(argv)
    for side in ("a", "b"):
        path = os.path.abspath(getattr(args, side))
        reason = B._need_file(path, "binary --%s" % side)
        if reason:
            raise SystemExit(reason)
        setattr(args, side, path)
    if args.a_label == args.b_label:
        raise SystemExit("--a-label and --b-label must differ")
    args.venv = os.path.abspath(args.venv)
    args.classes = [c for c in CLASSES if c in args.classes.split(",")]
    if not args.classes:
        raise SystemExit("--classes: choose from %s" % ",".join(CLASSES))
    return args


def workloads(args):
    known = dict(B.WORKLOADS, **ASGI_WORKLOADS)
    names = B.select(args.workloads,
                     B.WORKLOAD_ORDER + B.EXTRA_WORKLOADS + list(ASGI_WORKLOADS),
                     "workload")
    out = []
    for name in names:
        wl = copy.copy(known[name])
        if args.threads:
            wl.threads = args.threads
        if args.connections:
            wl.connections = args.connections
        out.append(wl)
    if not pairs(args, out):
        raise SystemExit("no workload fits the classes: --classes asgi takes "
                         "%s, the others the WSGI workloads"
                         % ",".join(ASGI_WORKLOADS))
    return out


def fits(wl, cls):
    """ASGI workloads run with the asgi class, WSGI ones with the others."""
    return (wl.name in ASGI_WORKLOADS) == (cls == "asgi")


def pairs(args, wls):
    """The (workload, class) pairs to run."""
    return [(wl, cls) for wl in wls for cls in args.classes if fits(wl, cls)]


def side_ctx(args, label, binary, lua):
    """What bench.run_one needs, for one of the two binaries."""
    log_dir = os.path.join(args.out_dir, "ab-logs", label)
    os.makedirs(log_dir, exist_ok=True)
    return types.SimpleNamespace(
        ferrocorn_bin=binary, workers=args.workers, venv=args.venv,
        log_dir=log_dir, lua=lua, warmup=args.warmup, duration=args.duration,
        wrk_cpus="", server_cpus="",
        wrk=args.wrk, wrk_threads=args.wrk_threads,
        wrk_timeout=args.wrk_timeout, start_timeout=args.start_timeout)


def _median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _ratio(b, a):
    return b / a if a and b is not None else None


def _spread(vals):
    """(max - min) / median of the rounds, in percent."""
    vals = [v for v in vals if v is not None]
    if len(vals) < 2 or not statistics.median(vals):
        return None
    return (max(vals) - min(vals)) / statistics.median(vals) * 100.0


# --------------------------------------------------------------------------
# wrk rounds

def run_rounds(args, wls, sides):
    runs = []
    todo = pairs(args, wls)
    total = args.rounds * len(todo) * 2
    per_run = args.warmup + args.duration + 2
    B.log("%d round(s) x %d workload/class pair(s) x 2 binaries, ~%ds "
          "per run (~%.0f min)" % (args.rounds, len(todo),
                                   per_run, total * per_run / 60.0))
    failed = set()
    for rnd in range(1, args.rounds + 1):
        order = sides if rnd % 2 else sides[::-1]
        for wl in wls:
            for cls in args.classes:
                if not fits(wl, cls):
                    continue
                for label, ctx in order:
                    if (label, wl.name, cls) in failed:
                        continue
                    res = B.run_one(ctx, "ferrocorn-" + cls, wl, rnd)
                    res["label"], res["class"] = label, cls
                    runs.append(res)
                    head = "[round %d/%d] %-9s %-8s %-6s" % (
                        rnd, args.rounds, wl.name, cls, label)
                    if not res["ok"]:
                        failed.add((label, wl.name, cls))
                        B.log("%s FAILED: %s (log: %s)" % (
                            head, res["reason"], res["log"]))
                        continue
                    cpu = res.get("cpu") or {}
                    B.log("%s %9.0f req/s  %7.2f us/req (workers)  busiest "
                          "worker %s%%  errors %d  other load %s%%" % (
                              head, res["stats"]["rps"],
                              cpu.get("workers_cpu_us_per_req") or 0,
                              B._fmt(busiest_share(res), ".0f"),
                              res["stats"]["errors_total"],
                              B._fmt(cpu.get("foreign_cpu_pct"), ".0f")))
    return runs


def busiest_share(res):
    """The busiest worker's share of the workers' CPU in one run, in
    percent (50 with two workers evenly loaded)."""
    each = (res.get("cpu") or {}).get("workers_cpu_each_s") or []
    total = sum(each)
    return max(each) / total * 100.0 if total > 0 else None


def summarise(args, wls, runs):
    rows = []
    for wl in wls:
        for cls in args.classes:
            if not fits(wl, cls):
                continue
            row = {"workload": wl.name, "class": cls,
                   "connections": wl.connections,
                   "threads": wl.threads if cls == "gthread" else None}
            for label in (args.a_label, args.b_label):
                good = [r for r in runs if r["ok"] and r["label"] == label
                        and r["workload"] == wl.name and r["class"] == cls]
                rps = [r["stats"]["rps"] for r in good]
                us = [(r.get("cpu") or {}).get("workers_cpu_us_per_req")
                      for r in good]
                row[label] = {
                    "rounds": len(good),
                    "rps": _median(rps),
                    "rps_all": [round(v, 1) for v in rps],
                    "rps_spread_pct": _spread(rps),
                    "us_per_req": _median(us),
                    "us_per_req_all": us,
                    "us_spread_pct": _spread(us),
                    "busiest_worker_pct": _median(
                        [busiest_share(r) for r in good]),
                    "errors": sum(r["stats"]["errors_total"] for r in good),
                    "other_load_pct_max": max(
                        [(r.get("cpu") or {}).get("foreign_cpu_pct") or 0.0
                         for r in good] or [0.0]),
                }
            a, b = row[args.a_label], row[args.b_label]
            row["rps_ratio"] = _ratio(b["rps"], a["rps"])
            row["us_ratio"] = _ratio(b["us_per_req"], a["us_per_req"])
            rows.append(row)
    return rows


def rounds_table(args, rows):
    a, b = args.a_label, args.b_label
    head = ["workload", "class", "%s req/s" % a, "%s req/s" % b, "B/A",
            "%s us/req" % a, "%s us/req" % b, "B/A", "spread %",
            "busiest worker %", "errors", "other load %"]
    out = []
    for r in rows:
        ra, rb = r[a], r[b]
        spreads = [s for s in (ra["us_spread_pct"], rb["us_spread_pct"])
                   if s is not None]
        out.append([
            r["workload"] + ("" if r["threads"] is None
                             else " (threads %d)" % r["threads"]),
            r["class"],
            B._fmt(ra["rps"], ",.0f"), B._fmt(rb["rps"], ",.0f"),
            B._fmt(r["rps_ratio"], ".2f"),
            B._fmt(ra["us_per_req"], ".2f"), B._fmt(rb["us_per_req"], ".2f"),
            B._fmt(r["us_ratio"], ".2f"),
            "%.0f" % max(spreads) if spreads else "-",
            "%s/%s" % (B._fmt(ra["busiest_worker_pct"], ".0f"),
                       B._fmt(rb["busiest_worker_pct"], ".0f")),
            "%d/%d" % (ra["errors"], rb["errors"]),
            "%.0f" % max(ra["other_load_pct_max"], rb["other_load_pct_max"]),
        ])
    return head, out


# --------------------------------------------------------------------------
# callgrind

def _request_bytes(wl):
    body = b"a" * wl.body_size if wl.body_size else b""
    head = "%s %s HTTP/1.1\r\nHost: bench\r\n" % (wl.method, wl.path)
    if body:
        head += ("Content-Type: application/octet-stream\r\n"
                 "Content-Length: %d\r\n" % len(body))
    return head.encode() + b"\r\n" + body


def _read_response(sock, buf):
    """Read one Content-Length response from a keep-alive socket; returns
    (status, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(max(65536, length - len(rest)))
        if not chunk:
            raise ConnectionError("closed inside the response body")
        rest += chunk
    return status, rest[length:]


def fixed_requests(port, wl, n, conns, timeout=120.0):
    """Send exactly n requests over `conns` keep-alive connections (one
    request in flight on each).  Returns the number of non-200 answers."""
    req = _request_bytes(wl)
    bad = []
    counts = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]

    def client(count):
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            buf = b""
            for _ in range(count):
                s.sendall(req)
                status, buf = _read_response(s, buf)
                if status != 200:
                    bad.append(status)

    threads = [threading.Thread(target=client, args=(c,)) for c in counts if c]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(bad)


def _callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise ValueError("no totals in %s" % path)


def callgrind_once(args, label, binary, cls, wl, nreq, workdir):
    """Instructions of the worker over its whole life, serving nreq
    requests (plus the readiness probe).  The profiles stay in
    workdir/LABEL-CLASS-WORKLOAD-NREQ/ for callgrind_annotate."""
    port = B.free_port()
    outdir = os.path.join(workdir, "%s-%s-%s-%d" % (label, cls, wl.name, nreq))
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    argv = ["valgrind", "--tool=callgrind", "--quiet",
            "--callgrind-out-file=%s/callgrind.out.%%p" % outdir,
            binary, "-w", "1", "--timeout", "900", "--graceful-timeout", "120",
            "-b", "127.0.0.1:%d" % port, "--chdir", B.BENCH_DIR,
            "--virtualenv", args.venv]
    argv += B.ferrocorn_class_args(cls, wl) + [wl.module]
    logpath = os.path.join(outdir, "server.log")
    with open(logpath, "wb") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=B.BENCH_DIR,
                                env=dict(B.server_env(
                                    types.SimpleNamespace(venv=args.venv),
                                    "ferrocorn"), PYTHONHASHSEED="0"),
                                start_new_session=True)
    B._LIVE[proc.pid] = (proc, True)
    try:
        ok, detail, _ = B.wait_ready(proc, port, wl, max(300.0, args.start_timeout))
        if not ok:
            raise RuntimeError("%s: %s\n%s" % (binary, detail, B.tail(logpath)))
        workers = B.children_of(proc.pid)
        if len(workers) != 1:
            raise RuntimeError("expected one worker, found %r" % workers)
        bad = fixed_requests(port, wl, nreq, args.callgrind_connections)
        if bad:
            raise RuntimeError("%d non-200 answers" % bad)
    finally:
        B.stop_process(proc, grace=180.0)
    path = os.path.join(outdir, "callgrind.out.%d" % workers[0])
    return _callgrind_total(path)


def run_callgrind(args, wls, sides):
    n = args.callgrind
    workdir = os.path.join(args.out_dir, "ab-callgrind")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    for wl in wls:
        for cls in args.classes:
            if not fits(wl, cls):
                continue
            row = {"workload": wl.name, "class": cls,
                   "threads": wl.threads if cls == "gthread" else None}
            for label, ctx in sides:
                t0 = time.monotonic()
                ir1 = callgrind_once(args, label, ctx.ferrocorn_bin, cls, wl, n,
                                     workdir)
                ir2 = callgrind_once(args, label, ctx.ferrocorn_bin, cls, wl,
                                     2 * n, workdir)
                per = (ir2 - ir1) / n
                row[label] = {"ir_n": ir1, "ir_2n": ir2, "ir_per_req": per}
                B.log("[callgrind] %-9s %-8s %-6s %10.0f instructions/request "
                      "(%d and %d requests, %.0fs)" % (
                          wl.name, cls, label, per, n, 2 * n,
                          time.monotonic() - t0))
            row["ratio"] = _ratio(row[args.b_label]["ir_per_req"],
                                  row[args.a_label]["ir_per_req"])
            rows.append(row)
    return rows


def callgrind_table(args, rows):
    a, b = args.a_label, args.b_label
    head = ["workload", "class", "%s Ir/req" % a, "%s Ir/req" % b, "B/A"]
    out = [[r["workload"] + ("" if r["threads"] is None
                             else " (threads %d)" % r["threads"]),
            r["class"], "%.0f" % r[a]["ir_per_req"],
            "%.0f" % r[b]["ir_per_req"], B._fmt(r["ratio"], ".3f")]
           for r in rows]
    return head, out


# --------------------------------------------------------------------------

def text_table(head, rows):
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = []
    for j, r in enumerate([head] + rows):
        lines.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                               for i, c in enumerate(r)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":---", ":---"] + ["---:"] * (len(head) - 2)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    wls = workloads(args)
    os.makedirs(args.out_dir, exist_ok=True)
    lock = B.take_lock()  # noqa: F841  (held until exit)
    signal.signal(signal.SIGTERM, B._on_signal)
    signal.signal(signal.SIGHUP, B._on_signal)
    args.wrk = shutil.which("wrk")
    if not args.wrk and not args.callgrind:
        raise SystemExit("wrk not found (bench/run.sh installs it)")
    if args.callgrind and not shutil.which("valgrind"):
        raise SystemExit("valgrind not found (apt-get install -y valgrind)")
    lua = {wl.name: B.write_lua(args.out_dir, wl) for wl in wls}
    sides = [(args.a_label, side_ctx(args, args.a_label, args.a, lua)),
             (args.b_label, side_ctx(args, args.b_label, args.b, lua))]
    load1 = B.load_average()
    if load1 is not None and load1 > 0.5 * (os.cpu_count() or 1):
        B.log("warning: load average is %.1f before starting; prefer the "
              "CPU-per-request columns" % load1)
    started = datetime.datetime.now().astimezone()
    interrupted = False
    runs, rows = [], []
    try:
        if args.callgrind:
            rows = run_callgrind(args, wls, sides)
        else:
            runs = run_rounds(args, wls, sides)
    except KeyboardInterrupt:
        interrupted = True
        B.log("\ninterrupted; stopping servers")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        B.cleanup_all()
    if not args.callgrind:
        rows = summarise(args, wls, runs)
        head, table = rounds_table(args, rows)
        what = ("medians of %d round(s), %ds each, %d workers; us/req = "
                "worker CPU (utime+stime) per request; B/A > 1 means B is "
                "higher; spread = largest (max-min)/median of the us/req "
                "rounds" % (args.rounds, args.duration, args.workers))
        name = "ab-latest"
    else:
        head, table = callgrind_table(args, rows)
        what = ("instructions (user space, callgrind) of the one worker per "
                "request: (Ir(2N) - Ir(N)) / N with N = %d, %d connections"
                % (args.callgrind, args.callgrind_connections))
        name = "ab-callgrind"
    sides_txt = "A = %s: %s; B = %s: %s" % (args.a_label, args.a,
                                            args.b_label, args.b)
    print()
    print(sides_txt)
    print(what)
    print(text_table(head, table))
    doc = {"started": started.isoformat(timespec="seconds"),
           "argv": argv, "a": args.a, "b": args.b,
           "labels": [args.a_label, args.b_label], "interrupted": interrupted,
           "rows": rows,
           "runs": [{k: v for k, v in r.items() if k != "wrk_output"}
                    for r in runs]}
    with open(os.path.join(args.out_dir, name + ".json"), "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(args.out_dir, name + ".md"), "w") as f:
        f.write("Command: `bench/ab.py %s`\n\n%s\n\n%s\n\n%s\n" % (
            " ".join(argv), sides_txt, what, md_table(head, table)))
    print("\nwrote %s.{json,md}" % os.path.relpath(
        os.path.join(args.out_dir, name), B.REPO_ROOT))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
