"""The release number, in a module of its own so that every layer can read it without importing
the package's public face (``sr_bench/__init__``, which sits above them all)."""

__version__ = "0.1.0"
