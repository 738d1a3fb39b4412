# gunicorn.conf.py-style config for the compat suite's prometheus case:
# prometheus_client's multiprocess mode as its docs set it up under gunicorn.
import os
import shutil

workers = 2


def _state():
    # -e COMPAT_STATE_DIR=...: in os.environ from on_starting on (as in
    # gunicorn, not yet while the file's top level runs).
    return os.environ["COMPAT_STATE_DIR"]


def on_starting(server):
    # Set here, it reaches the workers (prometheus_client reads it when
    # the app imports it).
    path = os.path.join(_state(), "prom-multiproc")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def when_ready(server):
    # A metrics endpoint in the master's side (gunicorn: the master itself).
    from prometheus_client import CollectorRegistry, start_http_server, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    with open(os.path.join(_state(), "prom-metrics.port"), "w") as f:
        f.write(str(httpd.server_port))
    server.log.info("metrics on port %s", httpd.server_port)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
