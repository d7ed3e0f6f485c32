"""Rendering a batch on a Ray cluster: ``storyreel render STORIES... --ray``.

* **Driver** (the machine running the command, :mod:`.driver`): plans every story, locks the projects,
  starts one worker actor per GPU (or per ``cpus_per_worker`` CPUs on a CPU-only cluster), sends the
  shots largest first, writes each returned clip and its record atomically, builds each reel once.
* **Workers** (:mod:`.worker`): each loads its engine once and renders many shots into a private
  temporary folder; the clip's bytes travel back to the driver. No shared filesystem is needed.
* **What travels** (:mod:`.files`): each job with its photos (and their ``cast add`` records) and the
  cache entries its engine reads. Identity and text embeddings are computed once per cluster, by one
  worker, before the shots are sent; the driver keeps them in the projects' caches and ships them to the
  workers through Ray's object store.
* **Faults**: a shot whose worker dies is sent to another worker (Ray restarts the dead one); a shot
  that fails ``attempts`` times, or fails with a user error (no face found, ...), is reported and the
  batch goes on; Ctrl-C stops the workers; running the command again renders only what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_ATTEMPTS", "RayOptions"]

DEFAULT_ATTEMPTS = 3
"""How many times a shot is tried (on different workers where possible) before it is reported failed."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how to render on Ray.

    ``address``: the cluster (None: ``$RAY_ADDRESS``, else a new local Ray, as ``ray.init`` does);
    ``cpus_per_worker``: CPUs reserved per worker actor (the worker size on a CPU-only cluster; default 1);
    ``attempts``: tries per shot before it is reported failed.
    """

    address: str | None = None
    cpus_per_worker: float | None = None
    attempts: int = DEFAULT_ATTEMPTS
