"""The ``ferrocorn`` command: ``ferrocorn [OPTIONS] [APP_MODULE]``.

Installed as a console script and run by ``python -m ferrocorn``. This
process becomes the master; a USR2 upgrade re-executes the same interpreter
with the same options and entry point, then the same arguments.

It imports nothing beyond ``sys`` and ``os`` (already loaded at start-up):
every module imported here would stay in the master's memory for its whole
life.
"""

import os
import sys


def _flags():
    # Python 3.9 has no sys.orig_argv: the options that change how the
    # interpreter runs code, rebuilt from sys.flags, -W and -X.
    f = sys.flags
    out = []
    for letter, on in (("E", f.ignore_environment), ("I", f.isolated),
                       ("s", f.no_user_site), ("S", f.no_site),
                       ("B", f.dont_write_bytecode)):
        if on and not (letter in "Es" and f.isolated):
            out.append("-" + letter)
    out += ["-O"] * f.optimize + ["-b"] * f.bytes_warning
    out += ["-W" + w for w in sys.warnoptions]
    for k, v in getattr(sys, "_xoptions", {}).items():
        out.append("-X%s" % k if v is True else "-X%s=%s" % (k, v))
    return out


def _prefix(entry):
    # What came before the ferrocorn arguments on this interpreter's command
    # line: its options and the entry point, exactly as given.
    orig = getattr(sys, "orig_argv", None)
    n = len(sys.argv) - 1
    if orig and len(orig) > n and orig[len(orig) - n:] == sys.argv[1:]:
        return orig[1:len(orig) - n]
    return _flags() + entry


def _run(entry):
    from ferrocorn._ferrocorn import main as run

    exe = sys.executable
    if not exe:
        sys.exit("ferrocorn: error: sys.executable is unknown: cannot serve")
    return run(sys.argv[1:], exe, _prefix(entry))


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
