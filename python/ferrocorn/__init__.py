"""ferrocorn: a pre-fork WSGI/ASGI HTTP server, gunicorn-compatible, written in Rust.

The ``ferrocorn`` command (and ``python -m ferrocorn``) runs the server with
this interpreter and its packages: the Python process becomes the master,
which forks the workers.
"""

from ferrocorn._ferrocorn import __version__

__all__ = ["__version__"]
