"""`storyreel` commands: render."""

from storyreel.cli.app import app  # noqa: F401
