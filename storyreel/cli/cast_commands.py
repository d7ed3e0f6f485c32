"""`storyreel` commands: cast."""

from storyreel.cli.app import app  # noqa: F401
