"""gunicorn's own control client against ferrocorn: `gunicornc` (from
gunicorn 27, installed by run.sh) sends every command it has to a running
ferrocorn master over its control socket, and what it prints is checked
as a gunicorn user would read it. Standard library only (besides the
gunicornc under test); run by `compat/run.sh --ctl`.

    python ctl_suite.py --gunicornc VENV/bin/gunicornc --ferrocorn-bin BIN

Output: `ok NAME` or `FAIL NAME: reason`; then `N passed, N failed`. Exit
status 1 if any case failed. Bounded: every command has a 20 s timeout,
the whole run 150 s; the server runs in its own process group, which is
killed on the way out.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "tests", "apps")
RUN_LIMIT = 150


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """ferrocorn serving tests/apps/ctl_app.py with its control socket at
    the default place for XDG_RUNTIME_DIR=<a temp dir>."""

    def __init__(self, binary, workers=2):
        self.dir = tempfile.mkdtemp(prefix="ferrocorn-ctl-")
        self.port = free_port()
        self.sock = os.path.join(self.dir, "gunicorn.ctl")
        self.log_path = os.path.join(self.dir, "server.log")
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.dir)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "-w", str(workers), "-b", "127.0.0.1:%d" % self.port,
             "--chdir", APPS, "--graceful-timeout", "10", "ctl_app:app"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(self.sock) and "Ready:" in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("ferrocorn did not start:\n" + self.log())

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def get(self, path, timeout=20):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path),
                                    timeout=timeout) as r:
            return r.status

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def gunicornc(args, server, command, json_out=False, stdin=None, default_socket=False):
    cmd = [args.gunicornc]
    if not default_socket:
        cmd += ["-s", server.sock]
    if command is not None:
        cmd += ["-c", command]
    if json_out:
        cmd.append("-j")
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                       timeout=20, env=server.env)
    return p


def data(args, server, command):
    p = gunicornc(args, server, command, json_out=True)
    if p.returncode != 0:
        raise AssertionError("gunicornc -c %r: exit %d: %s" % (command, p.returncode, p.stderr))
    return json.loads(p.stdout)


def wait_for(cond, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def expect(cond, why):
    if not cond:
        raise AssertionError(why)


def worker_pids(args, server):
    return sorted(w["pid"] for w in data(args, server, "show workers")["workers"])


# ---- cases: each gets (args, server) -------------------------------------

def case_show_workers(args, s):
    wait_for(lambda: all(w["booted"] for w in data(args, s, "show workers")["workers"]))
    p = gunicornc(args, s, "show workers")
    expect(p.returncode == 0, p.stderr)
    expect("Total: 2 workers" in p.stdout, p.stdout)
    for pid in worker_pids(args, s):
        expect(str(pid) in p.stdout, p.stdout)
    expect(" yes " in p.stdout, "booted column: " + p.stdout)


def case_show_stats(args, s):
    p = gunicornc(args, s, "show stats")
    expect("PID:              %d" % s.proc.pid in p.stdout, p.stdout)
    expect("Workers current:  2" in p.stdout, p.stdout)
    expect("Workers target:   2" in p.stdout, p.stdout)
    expect("Uptime:" in p.stdout and "unknown" not in p.stdout, p.stdout)


def case_show_config(args, s):
    p = gunicornc(args, s, "show config")
    expect("workers: 2" in p.stdout, p.stdout)
    expect("worker_class: sync" in p.stdout, p.stdout)
    expect("control_socket: %s" % s.sock in p.stdout, p.stdout)


def case_show_listeners(args, s):
    p = gunicornc(args, s, "show listeners")
    expect("http://127.0.0.1:%d" % s.port in p.stdout, p.stdout)
    expect("Total: 1 listeners" in p.stdout, p.stdout)


def case_show_all(args, s):
    p = gunicornc(args, s, "show all")
    expect("PID: %d" % s.proc.pid in p.stdout, p.stdout)
    expect("WEB WORKERS (2)" in p.stdout, p.stdout)


def case_show_dirty(args, s):
    p = gunicornc(args, s, "show dirty")
    expect("Dirty arbiter not running" in p.stdout, p.stdout)


def case_help(args, s):
    p = gunicornc(args, s, "help")
    for c in ("show workers", "worker add [N]", "reload", "shutdown [graceful|quick]", "stacks [PID]"):
        expect(c in p.stdout, "%r missing: %s" % (c, p.stdout))


def case_default_socket(args, s):
    # gunicornc's default path for this XDG_RUNTIME_DIR is ferrocorn's.
    p = gunicornc(args, s, "show workers", default_socket=True)
    expect(p.returncode == 0 and "Total: 2 workers" in p.stdout, p.stdout + p.stderr)


def case_interactive(args, s):
    p = gunicornc(args, s, None, stdin="show stats\nbogus\nshow workers\nquit\n")
    expect("Connected to %s" % s.sock in p.stdout, p.stdout)
    expect("Workers current:  2" in p.stdout, p.stdout)
    expect("Error: Invalid argument: Unknown command: bogus" in p.stdout, p.stdout)
    expect("Total: 2 workers" in p.stdout, "after an error the session goes on: " + p.stdout)


def case_worker_add_remove(args, s):
    d = data(args, s, "worker add 2")
    expect(d == {"added": 2, "previous": 2, "total": 4}, d)
    expect(wait_for(lambda: len(worker_pids(args, s)) == 4), worker_pids(args, s))
    d = data(args, s, "worker remove 2")
    expect(d == {"removed": 2, "previous": 4, "total": 2}, d)
    expect(wait_for(lambda: len(worker_pids(args, s)) == 2), worker_pids(args, s))


def case_worker_kill(args, s):
    victim = worker_pids(args, s)[0]
    d = data(args, s, "worker kill %d" % victim)
    expect(d == {"success": True, "killed": victim}, d)
    expect(wait_for(lambda: victim not in worker_pids(args, s)
                    and len(worker_pids(args, s)) == 2), worker_pids(args, s))
    d = data(args, s, "worker kill 1")
    expect(d["success"] is False and "not found" in d["error"], d)


def case_stacks(args, s):
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("status", s.get("/sleep?s=3")))
    t.start()
    time.sleep(0.8)
    d = data(args, s, "stacks")
    t.join(20)
    text = json.dumps(d)
    expect("sleeping_in_the_app" in text, text[:2000])
    expect(result.get("status") == 200, "the request finished: %r" % result)


def case_bad_command(args, s):
    p = gunicornc(args, s, "frobnicate now")
    expect(p.returncode == 1, "exit %d" % p.returncode)
    expect("Error: Invalid argument: Unknown command: frobnicate" in p.stderr, p.stderr)
    p = gunicornc(args, s, "worker add lots")
    expect(p.returncode == 1 and "Error: Invalid argument" in p.stderr, p.stderr)
    expect(s.get("/") == 200, "still serving")


def case_reopen(args, s):
    d = data(args, s, "reopen")
    expect(d == {"status": "reopening"}, d)
    expect(wait_for(lambda: "Handling signal: usr1" in s.log()), s.log())


def case_reload(args, s):
    before = worker_pids(args, s)
    d = data(args, s, "reload")
    expect(d == {"status": "reloading"}, d)
    expect(wait_for(lambda: (lambda now: len(now) == 2 and not set(now) & set(before))(
        worker_pids(args, s))), "workers replaced: %s -> %s" % (before, worker_pids(args, s)))


def case_shutdown(args, s):
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("status", s.get("/sleep?s=2")))
    t.start()
    time.sleep(0.5)
    d = data(args, s, "shutdown graceful")
    expect(d == {"status": "shutting_down", "mode": "graceful"}, d)
    t.join(20)
    expect(result.get("status") == 200, "in-flight request finished: %r" % result)
    s.proc.wait(20)
    expect(s.proc.returncode == 0, "exit code %r" % s.proc.returncode)
    expect(not os.path.exists(s.sock), "socket file removed")


CASES = [
    ("show-workers", case_show_workers),
    ("show-stats", case_show_stats),
    ("show-config", case_show_config),
    ("show-listeners", case_show_listeners),
    ("show-all", case_show_all),
    ("show-dirty", case_show_dirty),
    ("help", case_help),
    ("default-socket-path", case_default_socket),
    ("interactive", case_interactive),
    ("worker-add-remove", case_worker_add_remove),
    ("worker-kill", case_worker_kill),
    ("stacks", case_stacks),
    ("bad-command", case_bad_command),
    ("reopen", case_reopen),
    ("reload", case_reload),
    ("shutdown-graceful", case_shutdown),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gunicornc", required=True)
    ap.add_argument("--ferrocorn-bin", required=True)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("only", nargs="*")
    args = ap.parse_args()
    if args.list:
        print("\n".join(n for n, _ in CASES))
        return 0
    if not os.access(args.ferrocorn_bin, os.X_OK):
        print("ctl: %s is not executable" % args.ferrocorn_bin, file=sys.stderr)
        return 2
    version = subprocess.run([args.gunicornc, "--version"], capture_output=True,
                             text=True, timeout=20).stdout.strip()
    print("ctl: %s against %s" % (version, args.ferrocorn_bin))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("run limit")))
    signal.alarm(RUN_LIMIT)
    passed = failed = 0
    server = Server(args.ferrocorn_bin)
    try:
        for name, fn in CASES:
            if args.only and not any(o in name for o in args.only):
                continue
            try:
                fn(args, server)
                print("ok", name)
                passed += 1
            except Exception as e:  # a failing case is reported, the rest run
                print("FAIL %s: %s" % (name, e))
                for line in server.log().splitlines()[-8:]:
                    print("#", line)
                failed += 1
    finally:
        signal.alarm(0)
        server.stop()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
