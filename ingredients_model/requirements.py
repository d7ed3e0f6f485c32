"""Installed versions against the version floors this package declares.

The floors live in one place, ``pyproject.toml``; once installed they are the distribution's metadata,
which :func:`unmet_requirements` reads (so it also works from a wheel, without the source tree).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["UnmetRequirement", "declared_requirements", "unmet_requirements"]


@dataclass(frozen=True)
class UnmetRequirement:
    """A declared requirement that the installed packages do not satisfy."""

    name: str
    specifier: str
    installed: str | None
    extra: str | None

    def __str__(self) -> str:
        where = f" (extra [{self.extra}])" if self.extra else ""
        have = f"{self.installed} is installed" if self.installed else "not installed"
        return f"{self.name}{self.specifier}{where}: {have}"


def _distribution() -> str:
    names = importlib.metadata.packages_distributions().get(__package__ or "ingredients_model", [])
    if not names:
        raise importlib.metadata.PackageNotFoundError(f"{__package__} is not installed as a distribution")
    return names[0]


def declared_requirements(extras: Sequence[str] = ()) -> list[tuple[str, str | None]]:
    """The requirement strings this package's distribution declares, with the extra each belongs to
    (``None``: always required), for the base install plus ``extras``."""
    from packaging.requirements import Requirement

    out = []
    for line in importlib.metadata.requires(_distribution()) or []:
        requirement = Requirement(line)
        if requirement.marker is None:
            out.append((line, None))
            continue
        for extra in ("", *extras):
            if requirement.marker.evaluate({"extra": extra}):
                out.append((line, extra or None))
                break
    return out


def unmet_requirements(extras: Sequence[str] = ()) -> list[UnmetRequirement]:
    """Declared requirements (base install plus ``extras``) that the installed packages do not satisfy:
    missing, or outside the declared version range."""
    from packaging.requirements import Requirement

    unmet = []
    for line, extra in declared_requirements(extras):
        requirement = Requirement(line)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(UnmetRequirement(requirement.name, str(requirement.specifier), installed, extra))
    return unmet
