"""`storyreel` commands: eval."""

from storyreel.cli.app import app  # noqa: F401
