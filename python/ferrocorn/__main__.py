"""The ``ferrocorn`` command: ``ferrocorn [OPTIONS] [APP_MODULE]``.

Installed as a console script and run by ``python -m ferrocorn``. This
process becomes the master; a USR2 upgrade re-executes the same interpreter
with the same options and entry point, then the same arguments.
"""

import os
import sys


def _interpreter_options():
    # -X, -W, -O, -E and the like, as this interpreter was started with
    # (the stdlib's own helper for re-running an interpreter the same way).
    try:
        import subprocess

        return subprocess._args_from_interpreter_flags()
    except Exception:
        return []


def _run(entry):
    from ferrocorn._ferrocorn import main as run

    exe = sys.executable
    if not exe:
        sys.exit("ferrocorn: error: sys.executable is unknown: cannot serve")
    return run(sys.argv[1:], exe, _interpreter_options() + entry)


def main():
    """The console script's entry point."""
    script = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if script and os.path.basename(script) != "__main__.py":
        # Re-run the same script (replaced by an upgrade of the package).
        entry = [os.path.abspath(script)]
    else:
        entry = ["-m", "ferrocorn"]
    sys.exit(_run(entry))


if __name__ == "__main__":
    sys.exit(_run(["-m", "ferrocorn"]))
