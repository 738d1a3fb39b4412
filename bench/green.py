#!/usr/bin/python3
"""Greenlet-worker benchmarks: ferrocorn -k gevent and -k eventlet against
gunicorn 27 -k gevent and ferrocorn's own -k gthread, 2 workers each,
servers alternating within each round.

Scenarios (apps use plain blocking calls; the greenlet workers patch them):
  sleep     apps.green_sleep:app (time.sleep(0.01)), wrk -t2 -c1000 with
            wrk's default 2 s timeout, --worker-connections 1000
  longpoll  apps.green_longpoll:app (time.sleep(1)), 10,000 connections held
            at once: wrk -t2 -c10000 --timeout 5s, --worker-connections 6000

gthread runs with --threads 256 in both. The open-files limit is raised to
the hard limit (higher if allowed) for the harness, wrk and every server.

It reuses bench.py's machinery (own process group, readiness probe, wrk +
Lua JSON, CPU and memory sampling, stop) and adds what a greenlet comparison
needs: per-scenario wrk timeouts and worker connections, the sockets each
worker holds mid-run, reruns of runs disturbed by other load, and its own
summary, tables, JSON and chart.

    bench/run.sh green [--quick] [--scenarios sleep,longpoll] [--servers ...]
    /usr/bin/python3 bench/green.py --venv bench/.venv ...
"""

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

B = bench
BENCH_DIR = B.BENCH_DIR
REPO_ROOT = B.REPO_ROOT


# --------------------------------------------------------------------------
# scenarios

def _expect(body):
    def check(status, headers, got):
        return None if got == body else "body %r, expected %r" % (got[:80], body)
    return check


class Scenario(B.Workload):
    def __init__(self, name, module, connections, threads, wrk_timeout,
                 worker_connections, body, description, sleep_s):
        super().__init__(name, module, "/", connections, threads,
                         check=_expect(body), description=description)
        self.wrk_timeout = wrk_timeout            # seconds, wrk --timeout
        self.worker_connections = worker_connections
        self.sleep_s = sleep_s                    # what the app waits


SCENARIOS = {
    "sleep": Scenario(
        "sleep", "apps.green_sleep:app", connections=1000, threads=256,
        wrk_timeout=2, worker_connections=1000, body=b"slept 10 ms\n",
        sleep_s=0.01, description="time.sleep(0.01), then a 12-byte body"),
    "longpoll": Scenario(
        "longpoll", "apps.green_longpoll:app", connections=10000, threads=256,
        wrk_timeout=5, worker_connections=6000, body=b"event after 1 s\n",
        sleep_s=1.0, description="long-poll: time.sleep(1), then a 16-byte body"),
}
SCENARIO_ORDER = ["sleep", "longpoll"]


# --------------------------------------------------------------------------
# servers

def _ferrocorn(kind):
    def argv(ctx, wl, port):
        cmd = [ctx.ferrocorn_bin, "-k", kind, "-w", str(ctx.workers),
               "--worker-connections", str(wl.worker_connections)]
        if kind == "gthread":
            cmd += ["--threads", str(wl.threads)]
        return cmd + ["-b", "127.0.0.1:%d" % port, "--chdir", BENCH_DIR,
                      "--virtualenv", ctx.venv, wl.module]
    return argv


def _gunicorn_gevent(ctx, wl, port):
    # gunicorn's access log is off unless --access-logfile is given.
    return [B._venv_bin(ctx, "gunicorn"), "-k", "gevent", "-w", str(ctx.workers),
            "--worker-connections", str(wl.worker_connections),
            "-b", "127.0.0.1:%d" % port, "--chdir", BENCH_DIR, wl.module]


SERVERS = {
    "ferrocorn-gevent": B.Server("ferrocorn-gevent", _ferrocorn("gevent"),
                                 B._ferrocorn_available,
                                 note="-k gevent --worker-connections <scenario>"),
    "ferrocorn-eventlet": B.Server("ferrocorn-eventlet", _ferrocorn("eventlet"),
                                   B._ferrocorn_available,
                                   note="-k eventlet --worker-connections <scenario>"),
    "gunicorn-gevent": B.Server("gunicorn-gevent", _gunicorn_gevent,
                                lambda ctx: B._need_file(B._venv_bin(ctx, "gunicorn"),
                                                         "gunicorn"),
                                note="gunicorn 27 -k gevent --worker-connections <scenario>"),
    "ferrocorn-gthread": B.Server("ferrocorn-gthread", _ferrocorn("gthread"),
                                  B._ferrocorn_available,
                                  note="-k gthread --threads 256 --worker-connections <scenario>"),
}
SERVER_ORDER = ["ferrocorn-gevent", "ferrocorn-eventlet", "gunicorn-gevent",
                "ferrocorn-gthread"]
PEER = "gunicorn-gevent"
OWN = "ferrocorn-gthread"


# --------------------------------------------------------------------------
# open files

def raise_nofile(need):
    """Soft limit up to the hard limit; the hard limit itself up to `need`
    where we may (root). Returns (soft, hard) in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _limit_children():
    # Servers and wrk inherit the harness's limit anyway; set it again in
    # the child so nothing between fork and exec can lower it.
    lim = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, lim)


def proc_nofile(pid):
    """The 'Max open files' soft limit a running process has."""
    try:
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def proc_fds(pid):
    """(open fds, of which sockets) of one process, or (None, None)."""
    base = "/proc/%d/fd" % pid
    try:
        names = os.listdir(base)
    except OSError:
        return None, None
    socks = 0
    for n in names:
        try:
            if os.readlink(os.path.join(base, n)).startswith("socket:"):
                socks += 1
        except OSError:
            pass
    return len(names), socks


def sample(main_pid):
    """bench.py's memory sample plus each worker's open fds and sockets."""
    mem = B.sample_memory(main_pid)
    for w in mem["workers"]:
        w["fds"], w["sockets"] = proc_fds(w["pid"])
    mem["loadavg"] = os.getloadavg()
    return mem


# --------------------------------------------------------------------------
# one run

def busy_pct(seconds=1.0):
    """Busy share of all CPUs over `seconds` (user+nice+system)."""
    b0, _ = B.machine_cpu_seconds()
    t0 = time.monotonic()
    time.sleep(seconds)
    b1, _ = B.machine_cpu_seconds()
    return 100.0 * (b1 - b0) / ((time.monotonic() - t0) * (os.cpu_count() or 1))


def wait_quiet(below, wait):
    """Wait (bounded) for the other load to drop; returns (last busy %,
    seconds waited). Nothing of ours runs meanwhile, so all of it is
    someone else's."""
    t0 = time.monotonic()
    pct = busy_pct()
    while below > 0 and pct >= below and time.monotonic() - t0 < wait:
        pct = busy_pct()
    return round(pct, 1), round(time.monotonic() - t0, 1)


def wrk_cmd(ctx, wl, port, duration, latency=True):
    cmd = [ctx.wrk, "-t", str(ctx.wrk_threads), "-c", str(wl.connections),
           "-d", "%ds" % duration, "--timeout", "%ds" % wl.wrk_timeout]
    if latency:
        cmd.append("--latency")
    return cmd + ["-s", ctx.lua[wl.name], "http://127.0.0.1:%d%s" % (port, wl.path)]


def run_one(ctx, server, wl, rnd, attempt):
    srv = SERVERS[server]
    port = B.free_port()
    argv = srv.argv(ctx, wl, port)
    suffix = "" if attempt == 1 else "-try%d" % attempt
    logpath = os.path.join(ctx.log_dir, "%s-%s-r%d%s.log" % (wl.name, server, rnd, suffix))
    res = {"server": server, "workload": wl.name, "round": rnd, "attempt": attempt,
           "port": port, "argv": argv, "log": os.path.relpath(logpath, REPO_ROOT),
           "loadavg_before": os.getloadavg()}
    with open(logpath, "wb") as logf:
        logf.write(("$ %s\n" % " ".join(argv)).encode())
        logf.flush()
        try:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=BENCH_DIR,
                                    env=B.server_env(ctx, server),
                                    start_new_session=True,
                                    preexec_fn=_limit_children)
        except OSError as exc:
            res.update(ok=False, reason="could not start: %s" % exc)
            return res
    B._LIVE[proc.pid] = (proc, True)
    try:
        ok, detail, took = B.wait_ready(proc, port, wl, ctx.start_timeout)
        res["startup_s"] = took
        if not ok:
            res.update(ok=False, reason=detail, log_tail=B.tail(logpath))
            return res
        time.sleep(0.3)  # every worker up
        workers = B.children_of(proc.pid)
        res["nofile_limit"] = {"master": proc_nofile(proc.pid),
                               "workers": [proc_nofile(p) for p in workers]}
        if ctx.warmup > 0:
            B.run_wrk(wrk_cmd(ctx, wl, port, ctx.warmup, latency=False), ctx.warmup)
        # Let the warm-up's requests finish (bench.py does the same).
        t_drain = time.monotonic()
        try:
            B.http_request(port, wl, timeout=30.0)
        except (OSError, B.http.client.HTTPException) as exc:
            res["drain_error"] = "%s: %s" % (type(exc).__name__, exc)
        res["drain_s"] = round(time.monotonic() - t_drain, 3)
        if proc.poll() is not None:
            res.update(ok=False, reason="died during warm-up (code %s)" % proc.returncode,
                       log_tail=B.tail(logpath))
            return res
        cmd = wrk_cmd(ctx, wl, port, ctx.duration)
        res["wrk_cmd"] = cmd
        out, err, mem, cpu = B.run_wrk(cmd, ctx.duration,
                                       sample_cb=lambda: sample(proc.pid),
                                       server_pid=proc.pid)
        res["cpu"] = cpu
        res["memory_after"] = sample(proc.pid)
        if proc.poll() is not None:
            res.update(ok=False, reason="died during the run (code %s)" % proc.returncode,
                       log_tail=B.tail(logpath), wrk_output=out)
            return res
        if not mem or not mem.get("master"):
            mem = res["memory_after"]
            mem["when"] = "after run"
        else:
            mem["when"] = "mid run"
        try:
            stats = B.parse_wrk(out)
        except (ValueError, KeyError) as exc:
            stats = {}
            err += "\n[green] could not parse wrk output: %s" % exc
        if "rps" not in stats or "p99_ms" not in stats:
            res.update(ok=False, reason="could not parse wrk output",
                       wrk_output=out, wrk_stderr=err)
            return res
        if cpu and stats.get("requests"):
            cpu["server_cpu_us_per_req"] = round(cpu["server_cpu_s"] / stats["requests"] * 1e6, 1)
            cpu["workers_cpu_us_per_req"] = round(cpu["workers_cpu_s"] / stats["requests"] * 1e6, 2)
        res.update(ok=True, stats=stats, memory=mem, wrk_output=out)
        if err.strip():
            res["wrk_stderr"] = err
        # Lines the server logged during the run that look like trouble.
        res["log_warnings"] = log_warnings(logpath)
        return res
    finally:
        res["stop"] = B.stop_process(proc)


def log_warnings(path, limit=20):
    keys = ("error", "warn", "timeout", "too many", "emfile", "traceback", "exception")
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()[1:]
    except OSError:
        return []
    hits = [ln for ln in lines if any(k in ln.lower() for k in keys)
            and "EventletDeprecationWarning" not in ln]
    return hits[:limit] + (["... %d more" % (len(hits) - limit)] if len(hits) > limit else [])


# --------------------------------------------------------------------------
# summary

def summarise(runs, scenarios, servers):
    summary = {}
    for sc in scenarios:
        wl = SCENARIOS[sc]
        rows = {}
        for s in servers:
            rs = [r for r in runs if r["workload"] == sc and r["server"] == s
                  and r.get("ok") and not r.get("discarded")]
            if not rs:
                continue
            st = [r["stats"] for r in rs]
            each = [[w["rss_kb"] for w in r["memory"]["workers"]] for r in rs]
            kinds = {k: sum(x["errors"].get(k, 0) for x in st)
                     for k in ("connect", "read", "write", "timeout", "status")}
            rows[s] = {
                "rounds": len(rs),
                "rps": B._median([x["rps"] for x in st]),
                "rps_all": [round(x["rps"], 1) for x in st],
                "p50_ms": B._median([x.get("p50_ms") for x in st]),
                "p99_ms": B._median([x.get("p99_ms") for x in st]),
                "max_ms": max(x.get("max_ms") or 0 for x in st),
                "requests": sum(x["requests"] for x in st),
                "error_kinds": kinds,
                "errors": sum(kinds.values()),
                "timeouts_per_round": [x["errors"].get("timeout", 0) for x in st],
                "non2xx_per_round": [x["errors"].get("status", 0) for x in st],
                "socket_errors_per_round": [sum(x["errors"].get(k, 0) for k in
                                                ("connect", "read", "write")) for x in st],
                "workers_cpu_us_per_req": B._median(
                    [(r.get("cpu") or {}).get("workers_cpu_us_per_req") for r in rs]),
                "worker_rss_kb_max": B._median([max(e) if e else None for e in each]),
                "worker_rss_kb_mean": B._median([sum(e) / len(e) if e else None for e in each]),
                "worker_rss_kb_sum": B._median([sum(e) if e else None for e in each]),
                "worker_rss_kb_each_all": each,
                "master_rss_kb": B._median([(r["memory"]["master"] or {}).get("rss_kb")
                                            for r in rs]),
                "workers_seen": B._median([len(e) for e in each]),
                "worker_sockets_mid_run": B._median(
                    [sum(w.get("sockets") or 0 for w in r["memory"]["workers"]) for r in rs]),
                "worker_sockets_each_all": [[w.get("sockets") for w in r["memory"]["workers"]]
                                            for r in rs],
                "foreign_cpu_pct_all": [(r.get("cpu") or {}).get("foreign_cpu_pct") for r in rs],
                "foreign_cpu_pct_max": max((r.get("cpu") or {}).get("foreign_cpu_pct") or 0.0
                                           for r in rs),
                "ideal_rps": wl.connections / wl.sleep_s,
            }
        for s, row in rows.items():
            for key, other in (("vs_gunicorn_gevent", PEER), ("vs_gthread", OWN)):
                o = rows.get(other)
                row[key] = row["rps"] / o["rps"] if o and o["rps"] else None
            row["pct_of_ideal"] = 100.0 * row["rps"] / row["ideal_rps"]
        summary[sc] = rows
    return summary


def targets(summary):
    """The issue's targets, read from the summary: list of (text, met)."""
    out = []
    rows = summary.get("sleep") or {}
    fg = rows.get("ferrocorn-gevent")
    if fg:
        ratio = fg.get("vs_gunicorn_gevent")
        t = sum(fg["timeouts_per_round"])
        out.append(("sleep: ferrocorn -k gevent >= 2x gunicorn -k gevent (%s)"
                    % (B._fmt(ratio, ".2f") + "x"), bool(ratio and ratio >= 2.0)))
        out.append(("sleep: ferrocorn -k gevent, zero wrk timeouts (%d over %d rounds)"
                    % (t, fg["rounds"]), t == 0))
    rows = summary.get("longpoll") or {}
    for s in ("ferrocorn-gevent", "ferrocorn-eventlet"):
        r = rows.get(s)
        if r:
            out.append(("longpoll: %s answers every request (errors %d: %s; %.0f%% of "
                        "the ideal %s req/s)" % (
                            s, r["errors"], _kinds(r) or "none", r["pct_of_ideal"],
                            format(r["ideal_rps"], ",.0f")), r["errors"] == 0))
    return out


def _kinds(row):
    return ", ".join("%s %d" % (k, v) for k, v in row["error_kinds"].items() if v)


def _mib(kb):
    return None if kb is None else kb / 1024.0


COLS = ["server", "req/s", "p50 ms", "p99 ms", "vs gunicorn gevent", "vs gthread",
        "timeouts per round", "other errors", "worker CPU us/req",
        "worker RSS MiB (largest)", "worker RSS MiB (total)", "sockets held",
        "other load %"]


def table(rows, servers, workers):
    out = [list(COLS)]
    for s in servers:
        r = rows.get(s)
        if not r:
            out.append([s, "failed/skipped"] + [""] * (len(COLS) - 2))
            continue
        other = {k: v for k, v in r["error_kinds"].items() if k != "timeout" and v}
        out.append([
            s, B._fmt(r["rps"], ",.0f"), B._fmt(r["p50_ms"], ".1f"), B._fmt(r["p99_ms"], ".1f"),
            B._fmt(r["vs_gunicorn_gevent"], ".2f") + ("x" if r["vs_gunicorn_gevent"] else ""),
            B._fmt(r["vs_gthread"], ".2f") + ("x" if r["vs_gthread"] else ""),
            "/".join(str(t) for t in r["timeouts_per_round"]),
            ", ".join("%s %d" % kv for kv in other.items()) or "0",
            B._fmt(r["workers_cpu_us_per_req"], ".0f"),
            B._fmt(_mib(r["worker_rss_kb_max"]), ".1f"),
            B._fmt(_mib(r["worker_rss_kb_sum"]), ".1f")
            + ("" if r["workers_seen"] in (None, workers) else " (x%d)" % r["workers_seen"]),
            B._fmt(r["worker_sockets_mid_run"], ".0f"),
            "/".join(B._fmt(p, ".0f") for p in r["foreign_cpu_pct_all"]),
        ])
    return out


def text_table(t):
    w = [max(len(str(row[i])) for row in t) for i in range(len(t[0]))]
    lines = ["  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i])
                       for i, c in enumerate(row)).rstrip() for row in t]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def md_table(t):
    lines = ["| " + " | ".join(t[0]) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(t[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in t[1:]]
    return "\n".join(lines)


def header(ctx, sc):
    wl = SCENARIOS[sc]
    return ("%s - %s; wrk -t%d -c%d --timeout %ds, %ds x %d round(s), %d workers, "
            "--worker-connections %d, gthread --threads %d" % (
                sc, wl.description, ctx.wrk_threads, wl.connections, wl.wrk_timeout,
                ctx.duration, ctx.rounds, ctx.workers, wl.worker_connections, wl.threads))


NOTES = ("Medians over the rounds. vs gunicorn gevent / vs gthread = the row's req/s "
         "over that server's. timeouts per round = wrk's timeout count in each round "
         "(a request with no answer within wrk's --timeout); other errors = connect/"
         "read/write socket errors and non-2xx answers, summed over the rounds. worker "
         "CPU us/req = the workers' user+system CPU over the measured run / requests. "
         "RSS (VmRSS) and sockets held (socket fds open in the workers) are sampled "
         "halfway through the measured run. other load % = CPU used by anything but "
         "the server, wrk and the harness, as a share of both CPUs, per round.")


# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.sh green", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", default=B.DEFAULT_VENV)
    p.add_argument("--out", default=B.DEFAULT_OUT)
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 round")
    p.add_argument("--scenarios", default=",".join(SCENARIO_ORDER),
                   help="comma list from: %s" % ",".join(SCENARIO_ORDER))
    p.add_argument("--servers", default=",".join(SERVER_ORDER),
                   help="comma list from: %s (a prefix such as 'ferrocorn' selects "
                        "its variants)" % ",".join(SERVER_ORDER))
    p.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    p.add_argument("--duration", type=int, help="measured seconds (default 10; quick 3)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--threads", type=int, default=256, help="gthread --threads")
    p.add_argument("--sleep-connections", type=int, default=1000)
    p.add_argument("--longpoll-connections", type=int, default=10000)
    p.add_argument("--sleep-worker-connections", type=int, default=1000)
    p.add_argument("--longpoll-worker-connections", type=int, default=6000)
    p.add_argument("--rerun-above", type=float, default=40.0,
                   help="rerun a run whose other load (%% of the CPUs) was above this "
                        "(default 40; 0 disables)")
    p.add_argument("--max-reruns", type=int, default=1,
                   help="reruns per run at most; the last one is kept (default 1)")
    p.add_argument("--quiet-below", type=float, default=30.0,
                   help="before each run, wait until the machine's busy CPU over 1 s "
                        "is below this %% of the CPUs (default 30; 0 disables) ...")
    p.add_argument("--quiet-wait", type=float, default=30.0,
                   help="... for at most this many seconds (default 30)")
    p.add_argument("--ferrocorn-bin", default=os.environ.get("FERROCORN_BIN")
                   or os.path.join(REPO_ROOT, "target", "release", "ferrocorn"))
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (3 if a.quick else 10)
    return a


def versions(ctx):
    py = os.path.join(ctx.venv, "bin", "python")
    code = ("import importlib.metadata as m, json\nout = {}\n"
            "for d in ('gevent', 'greenlet', 'eventlet', 'gunicorn'):\n"
            "    try: out[d] = m.version(d)\n"
            "    except Exception: pass\nprint(json.dumps(out))")
    try:
        out = json.loads(B._cmd_output([py, "-c", code]) or "{}")
    except ValueError:
        out = {}
    out["ferrocorn"] = ctx.ferrocorn_bin
    out["wrk"] = B._cmd_output([ctx.wrk, "--version"]).splitlines()[0:1]
    return out


def main(argv):
    a = parse_args(argv)
    scenarios = B.select(a.scenarios, SCENARIO_ORDER, "scenario")
    servers = B.select(a.servers, SERVER_ORDER, "server")
    SCENARIOS["sleep"].connections = a.sleep_connections
    SCENARIOS["longpoll"].connections = a.longpoll_connections
    SCENARIOS["sleep"].worker_connections = a.sleep_worker_connections
    SCENARIOS["longpoll"].worker_connections = a.longpoll_worker_connections
    for sc in SCENARIOS.values():
        sc.threads = a.threads
    # wrk holds every connection; each server worker up to its share, plus
    # the listener, pipes and Python's own files.
    most = max(SCENARIOS[s].connections for s in scenarios)
    nofile = raise_nofile(2 * most + 4096)
    os.makedirs(a.out, exist_ok=True)
    log_dir = os.path.join(a.out, "green-logs")
    os.makedirs(log_dir, exist_ok=True)
    ctx = argparse.Namespace(
        venv=os.path.abspath(a.venv), workers=a.workers, wrk=shutil.which("wrk"),
        wrk_threads=a.wrk_threads, start_timeout=a.start_timeout, warmup=a.warmup,
        duration=a.duration, rounds=a.rounds, log_dir=log_dir,
        ferrocorn_bin=os.path.abspath(a.ferrocorn_bin), lua={})
    if not ctx.wrk:
        sys.exit("wrk not found (bench/run.sh installs it)")
    lock = B.take_lock()  # noqa: F841  one benchmark at a time
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, B._on_signal)
    for sc in scenarios:
        ctx.lua[sc] = B.write_lua(a.out, SCENARIOS[sc])
    skipped = {}
    for s in servers:
        why = SERVERS[s].available(ctx)
        if why:
            skipped[s] = why
            B.log("skipping %s: %s" % (s, why))
    started = datetime.datetime.now(datetime.timezone.utc)
    B.log("open files limit (soft, hard): %s; load average: %s" % (
        nofile, " ".join("%.2f" % x for x in os.getloadavg())))
    failed = {}  # (scenario, server) -> reason; not retried in later rounds
    runs = []
    interrupted = False
    try:
        for rnd in range(1, a.rounds + 1):
            for sc in scenarios:
                for s in servers:
                    if s in skipped or (sc, s) in failed:
                        continue
                    attempt = 1
                    while True:
                        label = "[round %d/%d] %-8s %-18s" % (rnd, a.rounds, sc, s)
                        quiet = wait_quiet(a.quiet_below, a.quiet_wait)
                        r = run_one(ctx, s, SCENARIOS[sc], rnd, attempt)
                        r["idle_busy_pct_before"], r["quiet_wait_s"] = quiet
                        runs.append(r)
                        if not r.get("ok"):
                            failed[(sc, s)] = r.get("reason")
                            B.log("%s FAILED: %s (log: %s)" % (label, r.get("reason"), r["log"]))
                            for line in (r.get("log_tail") or "").splitlines()[-8:]:
                                B.log("    | " + line)
                            break
                        st, mem = r["stats"], r["memory"]
                        fpct = (r.get("cpu") or {}).get("foreign_cpu_pct") or 0.0
                        B.log("%s %8.0f req/s  p50 %7.1f ms  p99 %7.1f ms  timeouts %d  "
                              "other errors %d  cpu %s us/req  workers RSS %s MiB  "
                              "sockets %s  other load %.0f%%" % (
                                  label, st["rps"], st.get("p50_ms", 0), st["p99_ms"],
                                  st["errors"]["timeout"],
                                  st["errors_total"] - st["errors"]["timeout"],
                                  B._fmt((r.get("cpu") or {}).get("workers_cpu_us_per_req"), ".0f"),
                                  "/".join("%.1f" % (w["rss_kb"] / 1024.0) for w in mem["workers"]),
                                  "/".join(str(w.get("sockets")) for w in mem["workers"]),
                                  fpct))
                        if quiet[1] >= 1.5:
                            B.log("    (waited %.0f s for the other load to drop; it was %.0f%% "
                                  "before the run)" % (quiet[1], quiet[0]))
                        if a.rerun_above > 0 and fpct > a.rerun_above and attempt <= a.max_reruns:
                            r["discarded"] = "other load %.0f%% > %.0f%%" % (fpct, a.rerun_above)
                            B.log("    other load %.0f%% is above %.0f%%: rerunning" % (
                                fpct, a.rerun_above))
                            attempt += 1
                            continue
                        break
    except KeyboardInterrupt:
        interrupted = True
        B.log("interrupted; reporting what ran")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        B.cleanup_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    summary = summarise(runs, scenarios, servers)
    tg = targets(summary)
    finished = datetime.datetime.now(datetime.timezone.utc)
    md = ["# Greenlet worker benchmark results", "",
          "%s to %s, %d CPUs, load average at the end %s. Command: `%s`." % (
              started.strftime("%Y-%m-%d %H:%M"), finished.strftime("%H:%M UTC"),
              os.cpu_count() or 0, " ".join("%.2f" % x for x in os.getloadavg()),
              " ".join(["bench/run.sh", "green"] + B._strip_default_venv(argv))), "",
          NOTES, ""]
    if interrupted:
        md[1:1] = ["", "**Interrupted run: partial results.**"]
    for sc in scenarios:
        t = table(summary[sc], servers, a.workers)
        B.log("\n" + header(ctx, sc))
        B.log(text_table(t))
        md += ["## " + header(ctx, sc), "", md_table(t), ""]
    if tg:
        B.log("\ntargets:")
        md += ["## Targets", ""]
        for text, met in tg:
            B.log("  %s: %s" % ("met" if met else "MISSED", text))
            md.append("- %s: %s" % ("met" if met else "**missed**", text))
        md.append("")
    reruns = [r for r in runs if r.get("discarded")]
    if reruns:
        md += ["## Reruns", ""] + ["- round %d %s / %s: %s" % (
            r["round"], r["workload"], r["server"], r["discarded"]) for r in reruns] + [""]
        B.log("\nreruns: " + "; ".join("r%d %s/%s (%s)" % (
            r["round"], r["workload"], r["server"], r["discarded"]) for r in reruns))
    warn = [(r["workload"], r["server"], r["round"], r["log_warnings"])
            for r in runs if r.get("log_warnings")]
    if warn:
        md += ["## Server log lines that look like trouble", ""]
        for sc, s, rnd, lines in warn:
            md.append("- %s / %s, round %d:" % (sc, s, rnd))
            md += ["  - `%s`" % ln.replace("`", "'")[:200] for ln in lines[:5]]
        md.append("")
    for (sc, s), why in failed.items():
        B.log("failed: %s / %s: %s" % (sc, s, why))
    for s, why in skipped.items():
        B.log("skipped: %s: %s" % (s, why))
    doc = {"meta": {"started": started.isoformat(timespec="seconds"),
                    "finished": finished.isoformat(timespec="seconds"),
                    "interrupted": interrupted, "cpus": os.cpu_count(),
                    "argv": sys.argv, "nofile": nofile, "versions": versions(ctx)},
           "settings": {"scenarios": scenarios, "servers": servers, "rounds": a.rounds,
                        "duration": a.duration, "warmup": a.warmup, "workers": a.workers,
                        "wrk_threads": a.wrk_threads, "gthread_threads": a.threads,
                        "rerun_above_pct": a.rerun_above, "max_reruns": a.max_reruns,
                        "quiet_below_pct": a.quiet_below, "quiet_wait_s": a.quiet_wait,
                        "scenario": {sc: {"module": SCENARIOS[sc].module,
                                          "connections": SCENARIOS[sc].connections,
                                          "wrk_timeout_s": SCENARIOS[sc].wrk_timeout,
                                          "worker_connections": SCENARIOS[sc].worker_connections}
                                     for sc in scenarios}},
           "summary": summary, "targets": [{"target": t, "met": m} for t, m in tg],
           "failed": ["%s/%s: %s" % (sc, s, w) for (sc, s), w in failed.items()],
           "skipped": skipped, "runs": runs}
    jpath = os.path.join(a.out, "green-latest.json")
    with open(jpath, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    mpath = os.path.join(a.out, "green-latest.md")
    with open(mpath, "w") as f:
        f.write("\n".join(md) + "\n")
    note = ""
    try:
        import chart
        chart.PALETTE.update({"ferrocorn-gevent": "#c2410c", "ferrocorn-eventlet": "#f59e0b",
                              "gunicorn-gevent": "#1d4ed8", "ferrocorn-gthread": "#15803d"})
        svg = os.path.join(a.out, "green-chart.svg")
        chart.write_chart(doc, svg)
        note = ", " + os.path.relpath(svg, REPO_ROOT)
        if not interrupted and a.rounds >= 3 and os.path.abspath(a.out) == B.DEFAULT_OUT \
                and scenarios == SCENARIO_ORDER:
            shutil.copyfile(svg, os.path.join(BENCH_DIR, "green-chart.svg"))
            note += " (copied to bench/green-chart.svg)"
    except Exception as exc:  # the numbers matter more than the picture
        note = "; chart failed: %s" % exc
    B.log("\nwrote %s, %s%s" % (os.path.relpath(jpath, REPO_ROOT),
                                os.path.relpath(mpath, REPO_ROOT), note))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
