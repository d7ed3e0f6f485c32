"""One local Ray (2 CPUs) shared by every cluster test; its workers stage files under the test's TMPDIR
and log face encodes (tests/helpers/ray_hooks.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.projects import REPO
from tests.helpers.ray_hooks import ENCODES_ENV


@dataclass
class LocalRay:
    tmp: Path  # the workers' $TMPDIR: their staging folders are here
    encodes: Path  # one line per face encode in any worker


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRay]:
    import ray

    tmp = tmp_path_factory.mktemp("ray-workers")
    cluster = LocalRay(tmp, tmp / "encodes.log")
    env = {"TMPDIR": str(tmp), "PYTHONPATH": str(REPO), ENCODES_ENV: str(cluster.encodes),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": env, "worker_process_setup_hook": "tests.helpers.ray_hooks.count_encodes"},
    )
    try:
        yield cluster
    finally:
        ray.shutdown()
