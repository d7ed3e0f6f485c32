"""`storyreel` commands: reel."""

from storyreel.cli.app import app  # noqa: F401
