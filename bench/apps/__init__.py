"""WSGI apps used by bench/bench.py.

Servers are started with the working directory set to bench/ and load the
apps as ``apps.<module>:app``; loading them as a package keeps ``apps/io.py``
from colliding with the standard library's ``io`` module.
"""
