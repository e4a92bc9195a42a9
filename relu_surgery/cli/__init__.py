"""The ``relu-surgery`` command line: thin click commands over the library."""

from .main import cli, main

__all__ = ["cli", "main"]
