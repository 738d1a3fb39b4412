#!/usr/bin/python3
"""Benchmark orchestrator for ferrocorn and peer WSGI servers.

Standard library only; meant to be run with Debian's /usr/bin/python3 via
bench/run.sh, which installs wrk and the peer servers first.  It can also be
run directly once bench/.venv exists:

    /usr/bin/python3 bench/bench.py --quick --servers gunicorn-sync,granian

For every round, every workload and every server (in that nesting, so the
servers are interleaved within a round) it:

  1. picks a fresh ephemeral loopback port,
  2. starts the server in its own session/process group,
  3. waits (bounded) until it answers, and checks the response is correct,
  4. warms it up with wrk for a couple of seconds,
  5. runs wrk for the measured duration, sampling per-process RSS halfway,
  6. stops it (SIGTERM, then SIGKILL of the whole group after 5 s).

Servers that exit at start, never answer, or answer wrongly are reported and
skipped for that workload.  The per-workload summary is the median over the
rounds.  Results go to bench/results/latest.{json,md} and an SVG chart.
"""

import argparse
import datetime
import fcntl
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
DEFAULT_VENV = os.path.join(BENCH_DIR, ".venv")
DEFAULT_OUT = os.path.join(BENCH_DIR, "results")
MiB = 1024 * 1024
LOCK_PATH = "/tmp/ferrocorn-bench.lock"

# Every child process we start is registered here so it can be torn down on
# any exit path (normal, exception, SIGINT, SIGTERM, SIGHUP).
_LIVE = {}  # pid -> (Popen, is_server)


# --------------------------------------------------------------------------
# workloads

class Workload:
    def __init__(self, name, module, path, connections, threads,
                 uwsgi_threads=0, method="GET", body_size=0, check=None,
                 description="", headers=None):
        self.name = name
        self.module = module            # "package.module:callable"
        self.path = path
        self.connections = connections  # wrk -c
        self.threads = threads          # --threads for gthread-style servers
        self.uwsgi_threads = uwsgi_threads  # 0: uwsgi runs without threads
        self.method = method
        self.body_size = body_size      # request body size (upload)
        self.check = check              # fn(status, headers, body) -> error or None
        self.description = description
        self.headers = headers or {}  # extra request headers (wrk -H)


def _check_hello(status, headers, body):
    if body != b"Hello, World!\n":
        return "unexpected body %r" % body[:80]
    return None


def _check_flask(status, headers, body):
    try:
        doc = json.loads(body)
    except ValueError:
        return "body is not JSON: %r" % body[:80]
    if not isinstance(doc, dict) or len(doc) < 5:
        return "unexpected JSON %r" % body[:80]
    return None


def _check_io(status, headers, body):
    return None if body == b"slept 10 ms\n" else "unexpected body %r" % body[:80]


def _check_download(status, headers, body):
    if len(body) != MiB:
        return "expected %d bytes, got %d" % (MiB, len(body))
    return None


def _check_upload(status, headers, body):
    if body.strip() != str(MiB).encode():
        return "expected body %r, got %r" % (str(MiB), body[:80])
    return None


WORKLOADS = {
    "hello": Workload(
        "hello", "apps.hello:app", "/", connections=64, threads=2,
        check=_check_hello,
        description="plain WSGI, 14-byte text/plain response"),
    # Not in the default set: every request on a new TCP connection, so that
    # servers that keep connections alive and those that do not (gunicorn's
    # sync worker, uWSGI's --http-socket) pay the same connection cost.
    "hello-close": Workload(
        "hello-close", "apps.hello:app", "/", connections=64, threads=2,
        check=_check_hello, headers={"Connection": "close"},
        description="hello, but wrk sends Connection: close on every request"),
    "flask": Workload(
        "flask", "apps.flask_json:app", "/json", connections=64, threads=2,
        check=_check_flask,
        description="Flask, GET /json -> jsonify(10-key dict)"),
    "io": Workload(
        "io", "apps.io:app", "/", connections=200, threads=64,
        uwsgi_threads=64, check=_check_io,
        description="time.sleep(0.01) then a short body (I/O-bound)"),
    "download": Workload(
        "download", "apps.download:app", "/", connections=16, threads=8,
        check=_check_download,
        description="1 MiB response body from a module-level bytes object"),
    "upload": Workload(
        "upload", "apps.upload:app", "/", connections=64, threads=8,
        method="POST", body_size=MiB, check=_check_upload,
        description="POST 1 MiB body; app reads wsgi.input, returns length"),
}
WORKLOAD_ORDER = ["hello", "flask", "io", "download", "upload"]
EXTRA_WORKLOADS = ["hello-close"]


# --------------------------------------------------------------------------
# servers

class Server:
    """argv(ctx, wl, port) builds the command line; available(ctx) returns
    None or a reason the server cannot be run at all."""

    def __init__(self, name, argv, available, note=""):
        self.name = name
        self.argv = argv
        self.available = available
        self.note = note


def _venv_bin(ctx, name):
    return os.path.join(ctx.venv, "bin", name)


def _need_file(path, what):
    if not path:
        return "%s not configured" % what
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return "%s not found at %s" % (what, path)
    return None


def _ferrocorn_available(ctx):
    if not ctx.ferrocorn_bin:
        return ("no ferrocorn binary (set FERROCORN_BIN or build "
                "target/release/ferrocorn)")
    return _need_file(ctx.ferrocorn_bin, "ferrocorn binary")


def ferrocorn_class_args(kind, wl):
    """The worker-class flags of ferrocorn for `kind` (sync, gthread, asgi)."""
    if kind == "gthread":
        return ["-k", "gthread", "--threads", str(wl.threads)]
    if kind == "asgi":
        return ["-k", "asgi"]
    return []


def _ferrocorn_argv(kind):
    def argv(ctx, wl, port):
        cmd = [ctx.ferrocorn_bin, "-w", str(ctx.workers),
               "-b", "127.0.0.1:%d" % port, "--chdir", BENCH_DIR,
               "--virtualenv", ctx.venv]
        return cmd + ferrocorn_class_args(kind, wl) + [wl.module]
    return argv


def _gunicorn_argv(kind):
    def argv(ctx, wl, port):
        # gunicorn's access log is off unless --access-logfile is given.
        cmd = [_venv_bin(ctx, "gunicorn"), "-w", str(ctx.workers),
               "-b", "127.0.0.1:%d" % port, "--chdir", BENCH_DIR]
        if kind == "gthread":
            cmd += ["-k", "gthread", "--threads", str(wl.threads)]
        return cmd + [wl.module]
    return argv


def _granian_argv(ctx, wl, port):
    # Blocking threads left at granian's default on purpose.
    return [_venv_bin(ctx, "granian"), "--interface", "wsgi",
            "--workers", str(ctx.workers), "--host", "127.0.0.1",
            "--port", str(port), "--working-dir", BENCH_DIR,
            "--no-access-log", wl.module]


def _uwsgi_argv(ctx, wl, port):
    cmd = [_venv_bin(ctx, "uwsgi"), "--http-socket", "127.0.0.1:%d" % port,
           "--processes", str(ctx.workers), "--master", "--disable-logging",
           "--chdir", BENCH_DIR, "--module", wl.module,
           # exit instead of serving "no app loaded" 500s:
           "--need-app",
           # uWSGI 2.0 treats SIGTERM as "reload" without this:
           "--die-on-term",
           # default backlog is 100; gunicorn uses 2048, granian 1024:
           "--listen", "1024",
           # --http-socket closes the connection after every response but
           # does not say so; without the header wrk counts each close as a
           # read error (gunicorn's sync worker sends it itself).
           "--add-header", "Connection: close"]
    if wl.uwsgi_threads:
        cmd += ["--threads", str(wl.uwsgi_threads)]
    return cmd


SERVERS = {
    "ferrocorn-sync": Server(
        "ferrocorn-sync", _ferrocorn_argv("sync"), _ferrocorn_available),
    "ferrocorn-gthread": Server(
        "ferrocorn-gthread", _ferrocorn_argv("gthread"), _ferrocorn_available,
        note="-k gthread --threads <per-workload>"),
    # For bench/ab.py --classes asgi (ASGI apps only; not in SERVER_ORDER).
    "ferrocorn-asgi": Server(
        "ferrocorn-asgi", _ferrocorn_argv("asgi"), _ferrocorn_available,
        note="-k asgi"),
    "gunicorn-sync": Server(
        "gunicorn-sync", _gunicorn_argv("sync"),
        lambda ctx: _need_file(_venv_bin(ctx, "gunicorn"), "gunicorn")),
    "gunicorn-gthread": Server(
        "gunicorn-gthread", _gunicorn_argv("gthread"),
        lambda ctx: _need_file(_venv_bin(ctx, "gunicorn"), "gunicorn"),
        note="-k gthread --threads <per-workload>"),
    "granian": Server(
        "granian", _granian_argv,
        lambda ctx: _need_file(_venv_bin(ctx, "granian"), "granian"),
        note="--interface wsgi, default blocking threads"),
    "uwsgi": Server(
        "uwsgi", _uwsgi_argv,
        lambda ctx: _need_file(_venv_bin(ctx, "uwsgi"), "uwsgi"),
        note="--http-socket, --threads only where the workload sets it"),
}
SERVER_ORDER = ["ferrocorn-sync", "ferrocorn-gthread", "gunicorn-sync",
                "gunicorn-gthread", "granian", "uwsgi"]


# --------------------------------------------------------------------------
# process helpers

def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_stat(pid):
    """(state, ppid, pgrp) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2])


def _all_pids():
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def process_table():
    table = {}
    for pid in _all_pids():
        st = _read_stat(pid)
        if st is not None:
            table[pid] = st
    return table


def children_of(pid, table=None):
    table = table if table is not None else process_table()
    return sorted(p for p, (state, ppid, _) in table.items()
                  if ppid == pid and state != "Z")


def descendants_of(pid, table=None):
    table = table if table is not None else process_table()
    out, todo = [], [pid]
    while todo:
        cur = todo.pop()
        for child in children_of(cur, table):
            out.append(child)
            todo.append(child)
    return sorted(out)


def group_members(pgid):
    """Live (non-zombie) processes in process group pgid."""
    return sorted(pid for pid, (state, _, pgrp) in process_table().items()
                  if pgrp == pgid and state != "Z")


def proc_memory(pid):
    """VmRSS, RssAnon (kB) and PSS (kB) of one process; None if gone."""
    out = {"pid": pid}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:", "Name:")):
                    key, _, val = line.partition(":")
                    if key == "Name":
                        out["name"] = val.strip()
                    else:
                        out[{"VmRSS": "rss_kb", "RssAnon": "rss_anon_kb"}[key]] = \
                            int(val.split()[0])
    except OSError:
        return None
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss_kb"] = int(line.split()[1])
                    break
    except OSError:
        pass
    return out if "rss_kb" in out else None


def sample_memory(main_pid):
    """Memory of the server's main process and of its worker processes.

    Workers are the direct children of the main pid (gunicorn, uwsgi,
    ferrocorn and granian all fork/spawn their workers from it); deeper
    descendants, if any, are listed separately."""
    table = process_table()
    master = proc_memory(main_pid)
    kids = children_of(main_pid, table)
    workers = [m for m in (proc_memory(p) for p in kids) if m]
    deeper = [m for m in (proc_memory(p) for p in descendants_of(main_pid, table)
                          if p not in kids) if m]
    return {"master": master, "workers": workers, "others": deeper}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_ticks(pid):
    """utime+stime of one process in clock ticks, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def tree_cpu_seconds(main_pid):
    """utime+stime of the main process and its live descendants."""
    table = process_table()
    ticks = (proc_cpu_ticks(p) for p in [main_pid] + descendants_of(main_pid, table))
    return sum(t for t in ticks if t is not None) / CLK_TCK


def pids_cpu_seconds(pids):
    """{pid: utime+stime seconds} of the given processes still alive."""
    out = {}
    for pid in pids:
        t = proc_cpu_ticks(pid)
        if t is not None:
            out[pid] = t / CLK_TCK
    return out


def machine_cpu_seconds():
    """(busy, steal) CPU seconds of the whole machine since boot; busy is
    user+nice+system, which is where process time is accounted."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return (vals[0] + vals[1] + vals[2]) / CLK_TCK, \
        (vals[7] if len(vals) > 7 else 0) / CLK_TCK


def _own_cpu_seconds():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped wrk runs
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc, grace=5.0):
    """SIGTERM the process; after `grace` seconds SIGKILL its whole process
    group (it was started in its own session, so pgid == pid).  Returns how
    it ended."""
    how = "already exited"
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
            how = "terminated"
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            how = "killed after %.0fs" % grace
    # Workers may outlive the master briefly; give them the rest of the grace
    # period, then kill whatever is left in the group.
    deadline = time.monotonic() + grace
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = group_members(proc.pid)
    if left:
        _signal_group(proc.pid, signal.SIGKILL)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        how += "; killed %d leftover process(es) %s" % (len(left), left)
    _LIVE.pop(proc.pid, None)
    return how


def cleanup_all():
    for pid, (proc, is_server) in list(_LIVE.items()):
        try:
            if is_server:
                stop_process(proc, grace=2.0)
            else:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=5)
                _LIVE.pop(pid, None)
        except Exception as exc:  # best effort, keep going
            print("cleanup of pid %d failed: %s" % (pid, exc), file=sys.stderr)


def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


# --------------------------------------------------------------------------
# HTTP probing

def http_request(port, wl, timeout):
    body = b"a" * wl.body_size if wl.body_size else None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = dict(wl.headers)
        headers["Connection"] = "close"
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(wl.method, wl.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def wait_ready(proc, port, wl, deadline_s):
    """Poll until the server answers.  Returns (ok, detail, seconds)."""
    t0 = time.monotonic()
    last_err = "no answer"
    while time.monotonic() - t0 < deadline_s:
        code = proc.poll()
        if code is not None:
            return False, "exited at start with code %d" % code, None
        try:
            status, headers, body = http_request(port, wl, timeout=2.0)
        except (OSError, http.client.HTTPException) as exc:
            last_err = "%s: %s" % (type(exc).__name__, exc)
            time.sleep(0.1)
            continue
        took = time.monotonic() - t0
        if status != 200:
            return False, "answered HTTP %d: %r" % (status, body[:200]), took
        err = wl.check(status, headers, body) if wl.check else None
        if err:
            return False, "wrong response: %s" % err, took
        if "content-length" not in {k.lower() for k in headers}:
            return False, "response lacks Content-Length", took
        return True, "ok", took
    return False, "did not answer within %.0fs (last error: %s)" % (
        deadline_s, last_err), None


# --------------------------------------------------------------------------
# wrk

LUA_TEMPLATE = r"""
-- generated by bench/bench.py
%(setup)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%%d,\"duration_us\":%%d,\"bytes\":%%d," ..
    "\"connect\":%%d,\"read\":%%d,\"write\":%%d,\"status\":%%d,\"timeout\":%%d," ..
    "\"mean_us\":%%.1f,\"max_us\":%%d,\"p50_us\":%%d,\"p75_us\":%%d," ..
    "\"p90_us\":%%d,\"p99_us\":%%d,\"p999_us\":%%d}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""

UPLOAD_SETUP = """
-- The request body is built once per wrk thread, at script load.
wrk.method = "POST"
wrk.body = string.rep("a", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def write_lua(out_dir, wl):
    setup = UPLOAD_SETUP % wl.body_size if wl.body_size else ""
    path = os.path.join(out_dir, "wrk-%s.lua" % wl.name)
    with open(path, "w") as f:
        f.write(LUA_TEMPLATE % {"setup": setup})
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _to_ms(num, unit):
    return float(num) * _UNITS[unit]


def parse_wrk_text(text):
    """Parse wrk's human-readable report (used as a fallback and cross-check
    for the JSON line printed by the Lua done() hook)."""
    out = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        out["requests"] = int(m.group(1))
        out["duration_s"] = _to_ms(m.group(2), m.group(3)) / 1e3
    for pct, num, unit in re.findall(
            r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out["p%s_ms" % pct] = _to_ms(num, unit)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    errs = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    if m:
        errs.update(connect=int(m.group(1)), read=int(m.group(2)),
                    write=int(m.group(3)), timeout=int(m.group(4)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errs["status"] = int(m.group(1))
    out["errors"] = errs
    return out


def parse_wrk(text):
    """Combine the Lua JSON line (exact microseconds) and the text report."""
    res = parse_wrk_text(text)
    m = re.search(r"^BENCH_JSON (\{.*\})\s*$", text, re.M)
    if m:
        j = json.loads(m.group(1))
        dur = j["duration_us"] / 1e6
        res.update(
            source="lua",
            requests=j["requests"],
            duration_s=dur,
            rps=j["requests"] / dur if dur > 0 else 0.0,
            bytes=j["bytes"],
            mean_ms=j["mean_us"] / 1e3,
            max_ms=j["max_us"] / 1e3,
            p50_ms=j["p50_us"] / 1e3,
            p75_ms=j["p75_us"] / 1e3,
            p90_ms=j["p90_us"] / 1e3,
            p99_ms=j["p99_us"] / 1e3,
            p999_ms=j["p999_us"] / 1e3,
            errors={k: j[k] for k in
                    ("connect", "read", "write", "timeout", "status")},
        )
    else:
        res["source"] = "text"
    res["errors_total"] = sum(res["errors"].values())
    return res


def _pinned(cpus):
    """The taskset prefix that keeps a command on `cpus` (--pin-wrk)."""
    return ["taskset", "-c", cpus] if cpus else []


def wrk_cmd(ctx, wl, port, duration, script, latency=True):
    cmd = _pinned(ctx.wrk_cpus) + [ctx.wrk, "-t", str(ctx.wrk_threads), "-c", str(wl.connections),
           "-d", "%ds" % duration, "--timeout", "%ds" % ctx.wrk_timeout]
    if latency:
        cmd.append("--latency")
    for k, v in wl.headers.items():
        cmd += ["-H", "%s: %s" % (k, v)]
    if script:
        cmd += ["-s", script]
    return cmd + ["http://127.0.0.1:%d%s" % (port, wl.path)]


def run_wrk(cmd, duration, sample_cb=None, server_pid=None):
    """Run wrk; if sample_cb is given, call it halfway through.  With
    server_pid, also account CPU time over the run.  Returns
    (stdout, stderr, sample, cpu)."""
    if server_pid is not None:
        t0 = time.monotonic()
        # The workers are the server's direct children; their CPU alone
        # (without the master's) is what a request costs.
        workers = children_of(server_pid)
        wrk0 = pids_cpu_seconds(workers)
        srv0 = tree_cpu_seconds(server_pid)
        own0 = _own_cpu_seconds()
        busy0, steal0 = machine_cpu_seconds()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    _LIVE[proc.pid] = (proc, False)
    sample = None
    cpu = None
    try:
        if sample_cb is not None:
            time.sleep(duration / 2.0)
            if proc.poll() is None:
                sample = sample_cb()
        out, err = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += b"\n[bench] wrk killed: ran past its deadline"
    finally:
        _LIVE.pop(proc.pid, None)
    if server_pid is not None:
        wall = time.monotonic() - t0
        srv = tree_cpu_seconds(server_pid) - srv0
        wrk1 = pids_cpu_seconds(workers)
        workers_cpu = sum(wrk1[p] - wrk0[p] for p in wrk1 if p in wrk0)
        own = _own_cpu_seconds() - own0  # wrk + this harness
        busy1, steal1 = machine_cpu_seconds()
        busy = busy1 - busy0
        ncpu = os.cpu_count() or 1
        cpu = {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(srv, 3),
            "workers_cpu_s": round(workers_cpu, 3),
            "workers_cpu_each_s": [round(wrk1[p] - wrk0[p], 3)
                                   for p in workers if p in wrk1],
            "worker_pids": workers,
            # A worker that exited (or was replaced) during the run.
            "workers_lost": len(workers) - len(wrk1),
            "wrk_and_harness_cpu_s": round(own, 3),
            "machine_busy_s": round(busy, 3),
            "steal_s": round(steal1 - steal0, 3),
            # CPU used by anything else on the machine (other builds, tests,
            # daemons), as a share of all CPUs over the run.  A few percent
            # is accounting noise; more means the numbers are disturbed.
            "foreign_cpu_pct": round(max(0.0, busy - srv - own)
                                     / (wall * ncpu) * 100.0, 1),
        }
    return (out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
            sample, cpu)


# --------------------------------------------------------------------------
# one measurement

def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def server_env(ctx, server):
    env = dict(os.environ)
    # Keep the caller's Python settings from leaking into the servers.
    for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(k, None)
    env["PYTHONUNBUFFERED"] = "1"
    if server.startswith("ferrocorn"):
        env["VIRTUAL_ENV"] = ctx.venv
    else:
        env.pop("VIRTUAL_ENV", None)
    return env


def run_one(ctx, server, wl, rnd):
    """Start `server`, measure `wl`, stop it.  Returns a result dict with
    ok=True, or ok=False and a reason."""
    srv = SERVERS[server]
    port = free_port()
    argv = _pinned(ctx.server_cpus) + srv.argv(ctx, wl, port)
    logpath = os.path.join(ctx.log_dir, "%s-%s-r%d.log" % (wl.name, server, rnd))
    res = {"server": server, "workload": wl.name, "round": rnd, "port": port,
           "argv": argv, "log": os.path.relpath(logpath, REPO_ROOT)}
    with open(logpath, "wb") as logf:
        logf.write(("$ %s\n" % " ".join(argv)).encode())
        logf.flush()
        try:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=BENCH_DIR,
                                    env=server_env(ctx, server),
                                    start_new_session=True)
        except OSError as exc:
            res.update(ok=False, reason="could not start: %s" % exc)
            return res
    _LIVE[proc.pid] = (proc, True)
    try:
        ok, detail, took = wait_ready(proc, port, wl, ctx.start_timeout)
        res["startup_s"] = took
        if not ok:
            res.update(ok=False, reason=detail, log_tail=tail(logpath))
            return res
        # warm-up (discarded)
        if ctx.warmup > 0:
            run_wrk(wrk_cmd(ctx, wl, port, ctx.warmup, ctx.lua[wl.name],
                            latency=False), ctx.warmup)
        # Connections the warm-up left queued (accepted or still in the
        # listen backlog) are still being served; a sync server with a slow
        # app can spend seconds on them.  The backlog is FIFO, so one fresh
        # request returns only after they are drained: wait for it.
        t_drain = time.monotonic()
        try:
            http_request(port, wl, timeout=30.0)
        except (OSError, http.client.HTTPException) as exc:
            res["drain_error"] = "%s: %s" % (type(exc).__name__, exc)
        res["drain_s"] = round(time.monotonic() - t_drain, 3)
        if proc.poll() is not None:
            res.update(ok=False, reason="died during warm-up (code %s)"
                       % proc.returncode, log_tail=tail(logpath))
            return res
        cmd = wrk_cmd(ctx, wl, port, ctx.duration, ctx.lua[wl.name])
        out, err, mem, cpu = run_wrk(
            cmd, ctx.duration, sample_cb=lambda: sample_memory(proc.pid),
            server_pid=proc.pid)
        res["cpu"] = cpu
        res["wrk_cmd"] = cmd
        if proc.poll() is not None:
            res.update(ok=False, reason="died during the run (code %s)"
                       % proc.returncode, log_tail=tail(logpath),
                       wrk_output=out)
            return res
        if mem is None or not mem.get("master"):
            mem = sample_memory(proc.pid)  # fall back to an after-run sample
            mem["when"] = "after run"
        else:
            mem["when"] = "mid run"
        try:
            stats = parse_wrk(out)
        except (ValueError, KeyError) as exc:
            stats = {}
            err += "\n[bench] could not parse wrk output: %s" % exc
        if "rps" not in stats or "p99_ms" not in stats:
            res.update(ok=False, reason="could not parse wrk output",
                       wrk_output=out, wrk_stderr=err)
            return res
        if cpu and stats.get("requests"):
            cpu["server_cpu_us_per_req"] = round(
                cpu["server_cpu_s"] / stats["requests"] * 1e6, 1)
            cpu["workers_cpu_us_per_req"] = round(
                cpu["workers_cpu_s"] / stats["requests"] * 1e6, 2)
        res.update(ok=True, stats=stats, memory=mem, wrk_output=out)
        if err.strip():
            res["wrk_stderr"] = err
        return res
    finally:
        res["stop"] = stop_process(proc)


# --------------------------------------------------------------------------
# summarising and reporting

def _median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarise(runs, workloads, servers, baseline):
    summary = {}
    for wl in workloads:
        rows = {}
        for server in servers:
            good = [r for r in runs if r["workload"] == wl and
                    r["server"] == server and r.get("ok")]
            if not good:
                continue
            st = [r["stats"] for r in good]
            mem = [r["memory"] for r in good]
            worker_means = []
            worker_pss = []
            for m in mem:
                ws = [w["rss_kb"] for w in m["workers"]]
                worker_means.append(statistics.mean(ws) if ws else None)
                ps = [w.get("pss_kb") for w in m["workers"]]
                if ws and None not in ps:
                    worker_pss.append(sum(ps) + (m["master"].get("pss_kb") or 0))
            rows[server] = {
                "rounds": len(good),
                "rps": _median([s["rps"] for s in st]),
                "rps_all": [round(s["rps"], 1) for s in st],
                "p50_ms": _median([s.get("p50_ms") for s in st]),
                "p90_ms": _median([s.get("p90_ms") for s in st]),
                "p99_ms": _median([s.get("p99_ms") for s in st]),
                "master_rss_kb": _median([m["master"]["rss_kb"] for m in mem]),
                "worker_rss_kb_mean": _median(worker_means),
                "workers_seen": _median([len(m["workers"]) for m in mem]),
                "total_pss_kb": _median(worker_pss),
                "errors": sum(s["errors_total"] for s in st),
                "error_kinds": {k: sum(s["errors"][k] for s in st)
                                for k in st[0]["errors"]},
                "requests": sum(s["requests"] for s in st),
                "server_cpu_us_per_req": _median(
                    [(r.get("cpu") or {}).get("server_cpu_us_per_req")
                     for r in good]),
                "foreign_cpu_pct_max": max(
                    [(r.get("cpu") or {}).get("foreign_cpu_pct") or 0.0
                     for r in good]),
            }
        base = rows.get(baseline)
        for server, row in rows.items():
            if base and row["rps"]:
                row["rps_ratio"] = base["rps"] / row["rps"]
            else:
                row["rps_ratio"] = None
            if base and row["p99_ms"]:
                row["p99_ratio"] = base["p99_ms"] / row["p99_ms"]
            else:
                row["p99_ratio"] = None
        summary[wl] = rows
    return summary


def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _mb(kb):
    return None if kb is None else kb / 1024.0


COLUMNS = ["server", "req/s", "p50 ms", "p99 ms", "master RSS MiB",
           "worker RSS MiB (mean)", "CPU us/req", "req/s ratio", "p99 ratio",
           "errors"]


def table_rows(rows, servers, workers):
    out = []
    for server in servers:
        row = rows.get(server)
        if row is None:
            continue
        errs = row["errors"]
        err_txt = str(errs)
        if errs:
            kinds = ", ".join("%s %d" % (k, v)
                              for k, v in row["error_kinds"].items() if v)
            err_txt = "%d (%s) of %d" % (errs, kinds, row["requests"])
        out.append([
            server,
            _fmt(row["rps"], ",.0f"),
            _fmt(row["p50_ms"], ".2f"),
            _fmt(row["p99_ms"], ".2f"),
            _fmt(_mb(row["master_rss_kb"]), ".1f"),
            _fmt(_mb(row["worker_rss_kb_mean"]), ".1f")
            + ("" if row["workers_seen"] in (None, workers)
               else " (x%d)" % row["workers_seen"]),
            _fmt(row.get("server_cpu_us_per_req"), ".0f"),
            _fmt(row["rps_ratio"], ".2f") + ("x" if row["rps_ratio"] else ""),
            _fmt(row["p99_ratio"], ".2f") + ("x" if row["p99_ratio"] else ""),
            err_txt,
        ])
    return out


def text_table(rows):
    widths = [max(len(r[i]) for r in [COLUMNS] + rows)
              for i in range(len(COLUMNS))]
    lines = []
    for j, r in enumerate([COLUMNS] + rows):
        cells = [r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i])
                 for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


NOISY_PCT = 10.0


def noise_warnings(summary):
    out = []
    for wl, rows in summary.items():
        for server, row in rows.items():
            if row.get("foreign_cpu_pct_max", 0) > NOISY_PCT:
                out.append("%s / %s: other processes used up to %.0f%% of "
                           "the CPUs during a measured run"
                           % (wl, server, row["foreign_cpu_pct_max"]))
    return out


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def ratio_note(baseline):
    return ("req/s ratio = %s req/s / server req/s (>1: %s faster); "
            "p99 ratio = %s p99 / server p99 (<1: %s lower tail latency)."
            % (baseline, baseline, baseline, baseline))


def workload_header(ctx, wl):
    w = WORKLOADS[wl]
    return ("%s — %s; wrk -t%d -c%d, %ds x %d round(s); gthread threads %d%s"
            % (wl, w.description, ctx.wrk_threads, w.connections, ctx.duration,
               ctx.rounds, w.threads,
               ", uwsgi threads %d" % w.uwsgi_threads if w.uwsgi_threads
               else ""))


def write_markdown(path, ctx, meta, summary, skipped):
    out = ["# ferrocorn benchmark results", ""]
    if meta.get("interrupted"):
        out += ["**Interrupted run: partial results.**", ""]
    out += [
           "Generated %s on %s (%s CPUs, kernel %s), Python %s, wrk %s." % (
               meta["finished"], meta["host"], meta["cpus"], meta["kernel"],
               meta["python"], meta["wrk_version"]),
           "",
           "Command: `%s`" % meta["command"], "",
           "Versions: " + ", ".join("%s %s" % kv for kv in
                                    sorted(meta["versions"].items())), "",
           "Each number is the median of %d round(s); servers run interleaved "
           "within each round. %d worker processes each, access logs off. "
           "RSS is VmRSS sampled halfway through the measured run."
           % (ctx.rounds, ctx.workers), "",
           ratio_note(ctx.baseline) + " CPU us/req = CPU time of the "
           "server's processes during the measured run / requests.", ""]
    for wl, rows in summary.items():
        out += ["## " + workload_header(ctx, wl), ""]
        if rows:
            out += [md_table(table_rows(rows, ctx.servers, ctx.workers)), ""]
        else:
            out += ["_no server produced results_", ""]
    warnings = noise_warnings(summary)
    if warnings:
        out += ["## Noise warnings", ""] + ["- " + w for w in warnings] + [""]
    if skipped:
        out += ["## Skipped", ""]
        for s in skipped:
            out.append("- %s / %s (round %s): %s" % (
                s["workload"], s["server"], s["round"], s["reason"]))
        out.append("")
    out += ["![req/s per workload](chart.svg)", ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


# --------------------------------------------------------------------------
# environment facts

def _cmd_output(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _strip_default_venv(argv):
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--venv" and i + 1 < len(argv) and \
                os.path.abspath(argv[i + 1]) == DEFAULT_VENV:
            skip = True
            continue
        out.append(a)
    return out


def gather_meta(ctx, argv):
    versions = {}
    vpy = os.path.join(ctx.venv, "bin", "python")
    if os.path.exists(vpy):
        code = ("import importlib.metadata as m, json\n"
                "out = {}\n"
                "for d in ('gunicorn', 'granian', 'uWSGI', 'Flask'):\n"
                "    try: out[d.lower()] = m.version(d)\n"
                "    except Exception: pass\n"
                "print(json.dumps(out))")
        try:
            versions.update(json.loads(_cmd_output([vpy, "-c", code]) or "{}"))
        except ValueError:
            pass
    if ctx.ferrocorn_bin and os.path.exists(ctx.ferrocorn_bin):
        rev = _cmd_output(["git", "-C", REPO_ROOT, "rev-parse", "--short",
                           "HEAD"])
        versions["ferrocorn"] = "git " + (rev or "?")
    wrk_v = _cmd_output([ctx.wrk, "--version"]) if ctx.wrk else ""
    m = re.search(r"wrk (\S+)", wrk_v)
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk_version": m.group(1) if m else "?",
        "versions": versions,
        "command": " ".join(["bench/run.sh"] + _strip_default_venv(argv)),
    }


# --------------------------------------------------------------------------
# main

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="Benchmark ferrocorn against gunicorn, granian and uWSGI "
                    "on loopback.")
    p.add_argument("--quick", action="store_true",
                   help="3 s runs, 1 round (default: 10 s, 3 rounds)")
    p.add_argument("--workloads", default=",".join(WORKLOAD_ORDER),
                   help="comma list from: %s (default: all but %s)"
                        % (",".join(WORKLOAD_ORDER + EXTRA_WORKLOADS),
                           ",".join(EXTRA_WORKLOADS)))
    p.add_argument("--servers", default=",".join(SERVER_ORDER),
                   help="comma list from: %s (a prefix such as 'gunicorn' "
                        "selects all its variants)" % ",".join(SERVER_ORDER))
    p.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    p.add_argument("--duration", type=int,
                   help="measured seconds per run (default 10; quick 3)")
    p.add_argument("--warmup", type=int, default=2,
                   help="warm-up seconds per run (default 2)")
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes per server (default 2)")
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--pin-wrk", metavar="CPUS", default="",
                   help="run wrk on these CPUs (taskset list, e.g. 1) and the "
                        "servers on the others, so that the load generator "
                        "does not take CPU time from the server it measures")
    p.add_argument("--wrk-timeout", type=int, default=10,
                   help="wrk per-request timeout in seconds (default 10)")
    p.add_argument("--start-timeout", type=float, default=30.0,
                   help="seconds to wait for a server to answer (default 30)")
    p.add_argument("--baseline", default="ferrocorn-sync",
                   help="server the ratio columns compare against")
    p.add_argument("--venv", default=DEFAULT_VENV)
    p.add_argument("--ferrocorn-bin", default=os.environ.get("FERROCORN_BIN"),
                   help="default: $FERROCORN_BIN, else target/release/ferrocorn")
    p.add_argument("--out-dir", default=DEFAULT_OUT)
    p.add_argument("--list", action="store_true",
                   help="list workloads and servers, then exit")
    p.add_argument("--threads", type=int, default=0,
                   help="override every workload's --threads for the "
                        "gthread servers and uWSGI (default: per workload)")
    p.add_argument("--connections", type=int, default=0,
                   help="override every workload's wrk -c (default: per "
                        "workload)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    if not args.ferrocorn_bin:
        cand = os.path.join(REPO_ROOT, "target", "release", "ferrocorn")
        args.ferrocorn_bin = cand if os.path.exists(cand) else None
    if args.ferrocorn_bin:
        args.ferrocorn_bin = os.path.abspath(args.ferrocorn_bin)
    args.venv = os.path.abspath(args.venv)
    args.wrk_cpus = args.server_cpus = ""
    if args.pin_wrk:
        wrk_set = set()
        for part in args.pin_wrk.split(","):
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise SystemExit("--pin-wrk: not a CPU list: %r" % args.pin_wrk)
            wrk_set.update(range(int(lo), int(hi or lo) + 1))
        rest = sorted(os.sched_getaffinity(0) - wrk_set)
        if not rest or not wrk_set <= os.sched_getaffinity(0):
            raise SystemExit("--pin-wrk %s leaves no CPU for the servers, or "
                             "names one this process cannot use" % args.pin_wrk)
        args.wrk_cpus = ",".join(str(c) for c in sorted(wrk_set))
        args.server_cpus = ",".join(str(c) for c in rest)
    return args


def take_lock():
    """Two runs at once would load the same CPUs (and, with the same
    --out-dir, overwrite each other's results): one machine-wide lock,
    held as long as the returned file stays open."""
    lock = open(LOCK_PATH, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        other = lock.read().strip() or "?"
        raise SystemExit("another benchmark run (pid %s, lock %s) is in "
                         "progress; wait for it to finish" % (other, LOCK_PATH))
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def select(spec, known, what):
    chosen = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        matches = [k for k in known if k == item] or \
                  [k for k in known if k.startswith(item + "-")]
        if not matches:
            raise SystemExit("unknown %s %r (known: %s)"
                             % (what, item, ", ".join(known)))
        chosen += [m for m in matches if m not in chosen]
    # keep the canonical order
    return [k for k in known if k in chosen]


def main(argv):
    ctx = parse_args(argv)
    if ctx.list:
        for name in WORKLOAD_ORDER + EXTRA_WORKLOADS:
            w = WORKLOADS[name]
            print("workload %-9s %s %s -c%d threads=%d  %s" % (
                name, w.method, w.module, w.connections, w.threads,
                w.description))
        for name in SERVER_ORDER:
            print("server   %s %s" % (name, SERVERS[name].note))
        return 0
    workloads = select(ctx.workloads, WORKLOAD_ORDER + EXTRA_WORKLOADS,
                       "workload")
    if ctx.threads > 0:
        for name in workloads:
            WORKLOADS[name].threads = ctx.threads
            if WORKLOADS[name].uwsgi_threads:
                WORKLOADS[name].uwsgi_threads = ctx.threads
    if ctx.connections > 0:
        for name in workloads:
            WORKLOADS[name].connections = ctx.connections
    ctx.servers = select(ctx.servers, SERVER_ORDER, "server")
    ctx.wrk = shutil.which("wrk")
    if not ctx.wrk:
        raise SystemExit("wrk not found (bench/run.sh installs it)")

    os.makedirs(ctx.out_dir, exist_ok=True)
    ctx.lock = take_lock()
    ctx.log_dir = os.path.join(ctx.out_dir, "logs")
    os.makedirs(ctx.log_dir, exist_ok=True)
    ctx.lua = {w: write_lua(ctx.out_dir, WORKLOADS[w]) for w in workloads}

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    started = datetime.datetime.now().astimezone()
    runnable, skipped = [], []
    for s in ctx.servers:
        reason = SERVERS[s].available(ctx)
        if reason:
            log("skip %s: %s" % (s, reason))
            skipped.append({"server": s, "workload": "*", "round": "-",
                            "reason": reason})
        else:
            runnable.append(s)
    load1 = load_average()
    if load1 is not None and load1 > 0.5 * (os.cpu_count() or 1):
        log("warning: load average is %.1f before starting; other work on "
            "this machine will disturb the numbers" % load1)
    per_run = ctx.warmup + ctx.duration + 2
    log("%d round(s) x %d workload(s) x %d server(s), ~%ds per run "
        "(~%.0f min total)" % (
            ctx.rounds, len(workloads), len(runnable), per_run,
            ctx.rounds * len(workloads) * len(runnable) * per_run / 60.0))

    runs = []
    failed = {}  # (server, workload) -> reason; not retried in later rounds
    interrupted = False
    try:
        for rnd in range(1, ctx.rounds + 1):
            for wl_name in workloads:
                wl = WORKLOADS[wl_name]
                for server in runnable:
                    key = (server, wl_name)
                    if key in failed:
                        continue
                    label = "[round %d/%d] %-11s %-17s" % (
                        rnd, ctx.rounds, wl_name, server)
                    res = run_one(ctx, server, wl, rnd)
                    runs.append(res)
                    if res["ok"]:
                        st, mem = res["stats"], res["memory"]
                        ws = [w["rss_kb"] for w in mem["workers"]]
                        cpu = res.get("cpu") or {}
                        log("%s %9.0f req/s  p50 %7.2f ms  p99 %8.2f ms  "
                            "errors %d  rss master %.1f MiB workers %s MiB  "
                            "cpu %s us/req  other load %s%%"
                            % (label, st["rps"], st.get("p50_ms", 0),
                               st["p99_ms"], st["errors_total"],
                               mem["master"]["rss_kb"] / 1024.0,
                               "/".join("%.1f" % (k / 1024.0) for k in ws)
                               or "-",
                               _fmt(cpu.get("server_cpu_us_per_req"), ".0f"),
                               _fmt(cpu.get("foreign_cpu_pct"), ".0f")))
                    else:
                        failed[key] = res["reason"]
                        skipped.append({"server": server, "workload": wl_name,
                                        "round": rnd,
                                        "reason": res["reason"]})
                        log("%s SKIPPED: %s (log: %s)"
                            % (label, res["reason"], res["log"]))
                        if res.get("log_tail"):
                            for line in res["log_tail"].splitlines()[-8:]:
                                log("    | " + line)
    except KeyboardInterrupt:
        interrupted = True
        log("\ninterrupted; stopping servers and writing partial results")
    except Exception:
        interrupted = True
        import traceback
        traceback.print_exc()
        log("harness error; stopping servers and writing partial results")
    finally:
        # A second Ctrl-C must not cut the teardown short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        cleanup_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGHUP, _on_signal)

    summary = summarise(runs, workloads, ctx.servers, ctx.baseline)
    meta = gather_meta(ctx, argv)
    meta.update(started=started.isoformat(timespec="seconds"),
                finished=datetime.datetime.now().astimezone().isoformat(
                    timespec="seconds"),
                interrupted=interrupted)

    print()
    print(ratio_note(ctx.baseline))
    for wl, rows in summary.items():
        print()
        print(workload_header(ctx, wl))
        if rows:
            print(text_table(table_rows(rows, ctx.servers, ctx.workers)))
        else:
            print("  (no results)")
    warnings = noise_warnings(summary)
    if warnings:
        print()
        print("noise warnings (consider re-running on a quiet machine):")
        for w in warnings:
            print("  " + w)
    if skipped:
        print()
        print("skipped:")
        for s in skipped:
            print("  %s / %s (round %s): %s" % (s["workload"], s["server"],
                                                s["round"], s["reason"]))

    settings = {
        "rounds": ctx.rounds, "duration_s": ctx.duration,
        "warmup_s": ctx.warmup, "workers": ctx.workers,
        "wrk_threads": ctx.wrk_threads, "wrk_timeout_s": ctx.wrk_timeout,
        "baseline": ctx.baseline, "servers": ctx.servers,
        "workloads": {w: {"module": WORKLOADS[w].module,
                          "path": WORKLOADS[w].path,
                          "method": WORKLOADS[w].method,
                          "connections": WORKLOADS[w].connections,
                          "gthread_threads": WORKLOADS[w].threads,
                          "uwsgi_threads": WORKLOADS[w].uwsgi_threads,
                          "description": WORKLOADS[w].description}
                      for w in workloads},
    }
    doc = {"meta": meta, "settings": settings, "summary": summary,
           "skipped": skipped, "runs": runs}
    json_path = os.path.join(ctx.out_dir, "latest.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
    md_path = os.path.join(ctx.out_dir, "latest.md")
    write_markdown(md_path, ctx, meta, summary, skipped)

    svg_path = os.path.join(ctx.out_dir, "chart.svg")
    try:
        import chart
        chart.write_chart(doc, svg_path)
        chart_note = ", " + os.path.relpath(svg_path, REPO_ROOT)
        if not interrupted:  # keep the published chart from a complete run
            shutil.copyfile(svg_path, os.path.join(BENCH_DIR, "chart.svg"))
            chart_note += " (copied to bench/chart.svg)"
    except Exception as exc:  # the numbers matter more than the picture
        chart_note = "; chart failed: %s" % exc
    print()
    print("wrote %s, %s%s" % (os.path.relpath(json_path, REPO_ROOT),
                              os.path.relpath(md_path, REPO_ROOT), chart_note))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
