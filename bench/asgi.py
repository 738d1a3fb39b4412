#!/usr/bin/python3
"""ASGI benchmarks: ferrocorn -k asgi against uvicorn, gunicorn 27 -k asgi
and granian --interface asgi, 2 workers each, alternating runs.

Scenarios:
  hello  apps.asgi_hello:app, wrk -c50
  sleep  apps.asgi_sleep:app (await asyncio.sleep(0.01)), wrk -c1000
  ws     apps.asgi_ws:app, websocket echo driven by bench/wsload (Rust)

It reuses bench.py's machinery (start in own process group, readiness probe,
wrk + Lua JSON, memory/CPU sampling, stop) and adds the ASGI servers, the
websocket runner and its own summary/table/JSON/chart.

    bench/run.sh asgi [--quick] [--scenarios hello,sleep,ws] [--servers ...]
    /usr/bin/python3 bench/asgi.py --venv bench/.venv ...
"""

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import chart  # noqa: E402

B = bench
BENCH_DIR = B.BENCH_DIR
REPO_ROOT = B.REPO_ROOT
WSLOAD_DEFAULT = os.path.join(BENCH_DIR, "wsload", "target", "release", "wsload")


def _check_hello(status, headers, body):
    if body != b"Hello, World!":
        return "body %r, expected 'Hello, World!'" % body[:80]
    return None


SCENARIOS = {
    "hello": B.Workload("hello", "apps.asgi_hello:app", "/", 50, 0,
                        check=_check_hello,
                        description="ASGI hello world, 13-byte text/plain"),
    "sleep": B.Workload("sleep", "apps.asgi_sleep:app", "/", 1000, 0,
                        check=_check_hello,
                        description="await asyncio.sleep(0.01), then hello"),
    # wrk is not used for ws; connections = wsload -c.
    "ws": B.Workload("ws", "apps.asgi_ws:app", "/", 50, 0,
                     check=_check_hello,
                     description="websocket echo, driven by bench/wsload (Rust)"),
}
SCENARIO_ORDER = ["hello", "sleep", "ws"]


# --------------------------------------------------------------------------
# servers

def _ferrocorn(ctx, wl, port):
    return [ctx.ferrocorn_bin, "-k", "asgi", "-w", str(ctx.workers),
            "-b", "127.0.0.1:%d" % port, "--chdir", BENCH_DIR,
            "--virtualenv", ctx.venv, wl.module]


def _uvicorn(ctx, wl, port):
    return [B._venv_bin(ctx, "uvicorn"), "--workers", str(ctx.workers),
            "--host", "127.0.0.1", "--port", str(port),
            "--http", "httptools", "--loop", "uvloop", "--ws", "websockets",
            "--no-access-log", "--log-level", "warning",
            "--app-dir", BENCH_DIR, "--backlog", "2048", wl.module]


def _gunicorn(ctx, wl, port):
    return [B._venv_bin(ctx, "gunicorn"), "-k", "asgi", "-w", str(ctx.workers),
            "-b", "127.0.0.1:%d" % port, "--chdir", BENCH_DIR, wl.module]


def _granian(ctx, wl, port):
    return [B._venv_bin(ctx, "granian"), "--interface", "asgi",
            "--workers", str(ctx.workers), "--host", "127.0.0.1",
            "--port", str(port), "--working-dir", BENCH_DIR,
            "--no-access-log", wl.module]


def _need(name):
    return lambda ctx: B._need_file(B._venv_bin(ctx, name), name)


SERVERS = {
    "ferrocorn": B.Server("ferrocorn", _ferrocorn, B._ferrocorn_available,
                          note="-k asgi"),
    "uvicorn": B.Server("uvicorn", _uvicorn, _need("uvicorn"),
                        note="--http httptools --loop uvloop --ws websockets"),
    "gunicorn": B.Server("gunicorn", _gunicorn, _need("gunicorn"),
                         note="gunicorn 27 -k asgi"),
    "granian": B.Server("granian", _granian, _need("granian"),
                        note="--interface asgi"),
}
SERVER_ORDER = ["ferrocorn", "uvicorn", "gunicorn", "granian"]


def _server_env(ctx, server):
    env = B.server_env(ctx, server)
    if server == "uvicorn":
        # uvicorn --workers spawns via multiprocessing; make bench/ importable.
        env["PYTHONPATH"] = BENCH_DIR
    return env


# --------------------------------------------------------------------------
# Worker pids: the main process's direct children, minus multiprocessing's
# resource tracker (uvicorn --workers starts its workers with spawn).

def worker_pids(main_pid):
    table = B.process_table()
    kids = B.children_of(main_pid, table)
    out = []
    for p in kids:
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" in cmd or b"semaphore_tracker" in cmd:
            continue
        out.append(p)
    return out


def memory_sample(main_pid):
    master = B.proc_memory(main_pid)
    workers = [m for m in (B.proc_memory(p) for p in worker_pids(main_pid)) if m]
    return {"master": master, "workers": workers}


# --------------------------------------------------------------------------
# one websocket run

def run_wsload(ctx, port, duration):
    cmd = [ctx.wsload, "--url", "ws://127.0.0.1:%d/" % port,
           "--connections", str(ctx.ws_connections), "--duration", str(duration),
           "--size", str(ctx.ws_size), "--threads", str(ctx.ws_threads),
           "--window", str(ctx.ws_window)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    B._LIVE[proc.pid] = (proc, False)
    try:
        out, err = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    finally:
        B._LIVE.pop(proc.pid, None)
    line = out.decode("utf-8", "replace").strip().splitlines()
    try:
        return cmd, json.loads(line[-1]), err.decode("utf-8", "replace")
    except (IndexError, ValueError):
        return cmd, None, err.decode("utf-8", "replace") + out.decode("utf-8", "replace")


def run_one(ctx, server, wl, rnd):
    srv = SERVERS[server]
    port = B.free_port()
    argv = srv.argv(ctx, wl, port)
    logpath = os.path.join(ctx.log_dir, "%s-%s-r%d.log" % (wl.name, server, rnd))
    res = {"server": server, "workload": wl.name, "round": rnd, "port": port,
           "argv": argv, "log": os.path.relpath(logpath, REPO_ROOT)}
    with open(logpath, "wb") as logf:
        logf.write(("$ %s\n" % " ".join(argv)).encode())
        logf.flush()
        try:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=BENCH_DIR,
                                    env=_server_env(ctx, server),
                                    start_new_session=True)
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
        time.sleep(0.5)  # let every worker come up (uvicorn spawns lazily)
        workers = worker_pids(proc.pid)
        cpu0 = B.pids_cpu_seconds(workers)
        t0 = time.monotonic()
        busy0, _ = B.machine_cpu_seconds()
        if wl.name == "ws":
            if ctx.warmup > 0:
                run_wsload(ctx, port, ctx.warmup)  # discarded
            cpu0 = B.pids_cpu_seconds(workers)
            t0 = time.monotonic()
            busy0, _ = B.machine_cpu_seconds()
            cmd, stats, err = run_wsload(ctx, port, ctx.duration)
            res["wsload_cmd"] = cmd
            if not stats:
                res.update(ok=False, reason="wsload failed: %s" % err[-500:],
                           log_tail=B.tail(logpath))
                return res
            res["stats"] = {"rps": stats["msgs_per_s"], "requests": stats["msgs"],
                            "errors": stats["errors"] + stats["connect_errors"],
                            "first_error": stats.get("first_error"),
                            "client_cpu_s": stats.get("client_cpu_s")}
        else:
            if ctx.warmup > 0:
                B.run_wrk(B.wrk_cmd(ctx, wl, port, ctx.warmup, ctx.lua[wl.name],
                                    latency=False), ctx.warmup)
            cpu0 = B.pids_cpu_seconds(workers)
            t0 = time.monotonic()
            busy0, _ = B.machine_cpu_seconds()
            cmd = B.wrk_cmd(ctx, wl, port, ctx.duration, ctx.lua[wl.name])
            res["wrk_cmd"] = cmd
            out, err, _, _ = B.run_wrk(cmd, ctx.duration)
            try:
                stats = B.parse_wrk(out)
            except (ValueError, KeyError):
                stats = {}
            if "rps" not in stats:
                res.update(ok=False, reason="could not parse wrk output",
                           wrk_output=out, wrk_stderr=err)
                return res
            res["stats"] = stats
        wall = time.monotonic() - t0
        cpu1 = B.pids_cpu_seconds(workers)
        busy1, _ = B.machine_cpu_seconds()
        res["cpu"] = {"workers_cpu_s": round(sum(cpu1[p] - cpu0[p] for p in cpu1 if p in cpu0), 3),
                      "wall_s": round(wall, 3),
                      "machine_busy_pct": round((busy1 - busy0) / (wall * (os.cpu_count() or 1)) * 100, 1)}
        if res["stats"].get("requests"):
            res["cpu"]["workers_cpu_us_per_req"] = round(
                res["cpu"]["workers_cpu_s"] / res["stats"]["requests"] * 1e6, 2)
        # RSS after load, while the server is still up.
        res["memory"] = memory_sample(proc.pid)
        if proc.poll() is not None:
            res.update(ok=False, reason="died during the run (code %s)" % proc.returncode,
                       log_tail=B.tail(logpath))
            return res
        res["ok"] = True
        return res
    finally:
        res["stop"] = B.stop_process(proc)


# --------------------------------------------------------------------------
# summary

def summarise(runs, scenarios, servers):
    summary = {}
    for sc in scenarios:
        rows = {}
        for s in servers:
            rs = [r for r in runs if r["workload"] == sc and r["server"] == s and r.get("ok")]
            if not rs:
                continue
            w_rss = [sum(m["rss_kb"] for m in r["memory"]["workers"]) for r in rs]
            w_each = [max((m["rss_kb"] for m in r["memory"]["workers"]), default=None) for r in rs]
            rows[s] = {
                "rps": B._median([r["stats"]["rps"] for r in rs]),
                "rps_all": [r["stats"]["rps"] for r in rs],
                "p99_ms": B._median([r["stats"].get("p99_ms") for r in rs]),
                "workers": B._median([len(r["memory"]["workers"]) for r in rs]),
                "worker_rss_sum_kb": B._median(w_rss),
                "worker_rss_max_kb": B._median(w_each),
                "master_rss_kb": B._median([(r["memory"]["master"] or {}).get("rss_kb") for r in rs]),
                "cpu_us_per_req": B._median([r["cpu"].get("workers_cpu_us_per_req") for r in rs]),
                "client_cpu_s": B._median([r["stats"].get("client_cpu_s") for r in rs]),
                "errors": sum(int(r["stats"].get("errors") or 0) if not isinstance(r["stats"].get("errors"), dict)
                              else sum(r["stats"]["errors"].values()) for r in rs),
            }
        for s, row in rows.items():
            for peer in ("uvicorn", "granian"):
                p = rows.get(peer)
                row["vs_" + peer] = (row["rps"] / p["rps"]) if p and p["rps"] else None
            u = rows.get("uvicorn")
            row["rss_vs_uvicorn"] = (row["worker_rss_sum_kb"] / u["worker_rss_sum_kb"]) \
                if u and u.get("worker_rss_sum_kb") else None
        summary[sc] = rows
    return summary


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


COLS = ["server", "req/s", "p99 ms", "vs uvicorn", "vs granian",
        "worker RSS MiB (sum)", "RSS vs uvicorn", "CPU us/req", "errors"]


def table(rows, servers, ws=False):
    cols = list(COLS)
    if ws:
        cols[1] = "msgs/s"
        cols[7] = "CPU us/msg"
    out = [cols]
    for s in servers:
        r = rows.get(s)
        if not r:
            out.append([s, "failed/skipped"] + [""] * (len(cols) - 2))
            continue
        out.append([s, fmt(r["rps"], ",.0f"), fmt(r["p99_ms"], ".2f"),
                    fmt(r["vs_uvicorn"], ".2f") + "x" if r["vs_uvicorn"] else "-",
                    fmt(r["vs_granian"], ".2f") + "x" if r["vs_granian"] else "-",
                    fmt(r["worker_rss_sum_kb"] and r["worker_rss_sum_kb"] / 1024.0, ".1f"),
                    fmt(r["rss_vs_uvicorn"], ".2f"),
                    fmt(r["cpu_us_per_req"], ".1f"), str(r["errors"])])
    return out


def text_table(t):
    w = [max(len(str(row[i])) for row in t) for i in range(len(t[0]))]
    lines = ["  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i])
                       for i, c in enumerate(row)) for row in t]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def md_table(t):
    lines = ["| " + " | ".join(t[0]) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(t[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in t[1:]]
    return "\n".join(lines)


def header(ctx, sc):
    wl = SCENARIOS[sc]
    if sc == "ws":
        load = "wsload -c%d -t%d --window %d, %d-byte text messages" % (
            ctx.ws_connections, ctx.ws_threads, ctx.ws_window, ctx.ws_size)
    else:
        load = "wrk -t%d -c%d" % (ctx.wrk_threads, wl.connections)
    return "%s - %s; %s, %ds x %d round(s), %d workers" % (
        sc, wl.description, load, ctx.duration, ctx.rounds, ctx.workers)


# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", default=B.DEFAULT_VENV)
    p.add_argument("--out", default=B.DEFAULT_OUT)
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 round")
    p.add_argument("--scenarios", default=",".join(SCENARIO_ORDER))
    p.add_argument("--servers", default=",".join(SERVER_ORDER))
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=int)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--wrk-timeout", type=int, default=10)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--hello-connections", type=int, default=50)
    p.add_argument("--sleep-connections", type=int, default=1000)
    p.add_argument("--ws-connections", type=int, default=50)
    p.add_argument("--ws-threads", type=int, default=1)
    p.add_argument("--ws-size", type=int, default=32)
    p.add_argument("--ws-window", type=int, default=1,
                   help="messages in flight per websocket connection")
    p.add_argument("--wsload", default=os.environ.get("WSLOAD_BIN", WSLOAD_DEFAULT))
    p.add_argument("--ferrocorn-bin", default=os.environ.get("FERROCORN_BIN")
                   or os.path.join(REPO_ROOT, "target", "release", "ferrocorn"))
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (3 if a.quick else 10)
    return a


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, max(need, 65536)))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv):
    a = parse_args(argv)
    scenarios = B.select(a.scenarios, SCENARIO_ORDER, "scenario")
    servers = B.select(a.servers, SERVER_ORDER, "server")
    SCENARIOS["hello"].connections = a.hello_connections
    SCENARIOS["sleep"].connections = a.sleep_connections
    SCENARIOS["ws"].connections = a.ws_connections
    nofile = raise_nofile(4 * a.sleep_connections + 1024)  # inherited by wrk and servers
    os.makedirs(a.out, exist_ok=True)
    log_dir = os.path.join(a.out, "asgi-logs")
    os.makedirs(log_dir, exist_ok=True)
    ctx = types.SimpleNamespace(
        venv=os.path.abspath(a.venv), workers=a.workers, wrk=shutil.which("wrk"),
        wrk_threads=a.wrk_threads, wrk_timeout=a.wrk_timeout,
        start_timeout=a.start_timeout, warmup=a.warmup, duration=a.duration,
        rounds=a.rounds, log_dir=log_dir, ferrocorn_bin=os.path.abspath(a.ferrocorn_bin),
        wsload=os.path.abspath(a.wsload), ws_connections=a.ws_connections,
        ws_threads=a.ws_threads, ws_size=a.ws_size, ws_window=a.ws_window, lua={})
    lock = B.take_lock()  # noqa: F841  one benchmark at a time
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, B._on_signal)
    if not ctx.wrk and any(s != "ws" for s in scenarios):
        sys.exit("wrk not found (bench/run.sh installs it)")
    for sc in scenarios:
        if sc != "ws":
            ctx.lua[sc] = B.write_lua(a.out, SCENARIOS[sc])
    skipped = {}
    for s in servers:
        why = SERVERS[s].available(ctx)
        if why:
            skipped[s] = why
            B.log("skipping %s: %s" % (s, why))
    if "ws" in scenarios and not (os.path.isfile(ctx.wsload) and os.access(ctx.wsload, os.X_OK)):
        B.log("skipping ws: no wsload at %s (cargo build --release --manifest-path "
              "bench/wsload/Cargo.toml)" % ctx.wsload)
        scenarios = [s for s in scenarios if s != "ws"]
    B.log("open files limit: %d; load average: %s" % (nofile, os.getloadavg()))
    failed = {}  # (scenario, server) -> reason; not retried in later rounds
    runs = []
    try:
        for rnd in range(1, a.rounds + 1):
            for sc in scenarios:
                for s in servers:
                    if s in skipped or (sc, s) in failed:
                        continue
                    B.log("[round %d/%d] %s / %s ..." % (rnd, a.rounds, sc, s))
                    r = run_one(ctx, s, SCENARIOS[sc], rnd)
                    runs.append(r)
                    if r.get("ok"):
                        st = r["stats"]
                        B.log("    %s %s/s, errors %s, worker RSS %.1f MiB (sum of %d)" % (
                            s, format(st["rps"], ",.0f"), st.get("errors"),
                            sum(m["rss_kb"] for m in r["memory"]["workers"]) / 1024.0,
                            len(r["memory"]["workers"])))
                    else:
                        failed[(sc, s)] = r.get("reason")
                        B.log("    %s FAILED: %s" % (s, r.get("reason")))
                        if r.get("log_tail"):
                            B.log("      " + r["log_tail"].replace("\n", "\n      "))
    except KeyboardInterrupt:
        B.log("interrupted; reporting what ran")
    finally:
        B.cleanup_all()

    summary = summarise(runs, scenarios, servers)
    md = ["# ASGI benchmark results", "",
          "Ratios are req/s (msgs/s) of the row over uvicorn / granian; worker RSS "
          "is the sum over the %d workers, sampled right after the load stopped." % a.workers, ""]
    for sc in scenarios:
        t = table(summary[sc], servers, ws=(sc == "ws"))
        B.log("\n" + header(ctx, sc))
        B.log(text_table(t))
        md += ["## " + header(ctx, sc), "", md_table(t), ""]
    for (sc, s), why in failed.items():
        B.log("failed: %s / %s: %s" % (sc, s, why))
    for s, why in skipped.items():
        B.log("skipped: %s: %s" % (s, why))
    doc = {"meta": {"finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "cpus": os.cpu_count(), "argv": sys.argv,
                    "versions": versions(ctx)},
           "settings": {"scenarios": scenarios, "servers": servers, "rounds": a.rounds,
                        "duration": a.duration, "warmup": a.warmup, "workers": a.workers,
                        "wrk_threads": a.wrk_threads,
                        "connections": {sc: SCENARIOS[sc].connections for sc in scenarios},
                        "ws_threads": a.ws_threads, "ws_size": a.ws_size,
                        "ws_window": a.ws_window},
           "summary": summary,
           "failed": ["%s/%s: %s" % (sc, s, w) for (sc, s), w in failed.items()],
           "skipped": skipped, "runs": runs}
    jpath = os.path.join(a.out, "asgi-latest.json")
    with open(jpath, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    with open(os.path.join(a.out, "asgi-latest.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    svg = os.path.join(a.out, "asgi-chart.svg")
    chart.PALETTE.update({"ferrocorn": "#c2410c", "uvicorn": "#7c3aed",
                          "gunicorn": "#1d4ed8", "granian": "#15803d"})
    chart.write_chart(doc, svg)
    with open(svg) as f:
        text = f.read()
    with open(svg, "w") as f:
        f.write(text.replace("Requests/s by workload", "Requests/s (ws: echoed messages/s) by scenario", 1))
    shutil.copyfile(svg, os.path.join(BENCH_DIR, "asgi-chart.svg"))
    B.log("\nwrote %s, asgi-latest.md, %s (copied to bench/asgi-chart.svg)" % (jpath, svg))


def versions(ctx):
    py = os.path.join(ctx.venv, "bin", "python")
    out = {}
    for mod in ("uvicorn", "gunicorn", "granian", "websockets", "httptools", "uvloop"):
        try:
            out[mod] = subprocess.run(
                [py, "-c", "import importlib.metadata as m; print(m.version(%r))" % mod],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out[mod] = None
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
