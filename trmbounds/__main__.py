"""``python -m trmbounds``: the command line."""

from .cli import app

app()
