"""`storyreel` commands: models."""

from storyreel.cli.app import app  # noqa: F401
