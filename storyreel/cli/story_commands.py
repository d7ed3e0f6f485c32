"""`storyreel` commands: story."""

from storyreel.cli.app import app  # noqa: F401
