"""storyreel.api: the documented Python API, and the README's campaign script run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from storyreel import api
from storyreel.story import StoryValidationError
from tests.helpers.projects import REPO, make_project


def test_load_validate_plan_render_results(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "demo", shots=2)
    loaded = api.load_story(story.parent)  # a folder works as well as the file
    assert loaded.title == "Test Reel" and api.validate(story).ok

    planned = api.plan(loaded)
    counts = {"done": 0, "stored": 0, "stale": 0, "damaged": 0, "todo": 2}
    assert planned.engine == "preview" and planned.counts == counts
    assert [job["shot"] for job in planned.to_json()["jobs"]] == ["s1", "s2"]
    assert api.results(story).reel is None

    batch = api.render([story], engine="preview")
    assert batch.ok and batch.totals["shots"] == {"rendered": 2, "reused": 0, "current": 0, "failed": 0}
    assert api.plan(story).counts["done"] == 2
    found = api.results(story)
    assert found.reel == story.parent / "reel.mp4" and found.review is not None
    assert found.clips["s1"].record["key"] == planned.jobs[0].job.key
    assert json.loads(json.dumps(found.to_json()))["reel"] == str(found.reel)  # JSON-ready

    again = api.render([story], force=True, only=["s2"], reel=False)
    assert again.reports[0].rendered == ["s2"] and again.totals["shots"]["rendered"] == 1
    with pytest.raises(TypeError, match="unknown render option"):
        api.render([story], engin="preview")


def test_variants_from_python(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "ad", shots=2, captions="both")
    text = story.read_text().replace("file: reel.mp4", 'file: "ad-${who}.mp4"')
    story.write_text(
        text.replace("Caption 1", "For ${who}").replace("title: Test Reel", "title: T\nvars: {who: ~}")
    )
    batch = api.render([story], variables={"who": ["ann", "bob"]})
    assert [r.variables for r in batch.reports] == [{"who": "ann"}, {"who": "bob"}]
    assert batch.totals["shots"] == {"rendered": 2, "reused": 2, "current": 0, "failed": 0}  # captions only
    bob = api.load_story(story, {"who": "bob"})
    assert api.plan(bob).counts["done"] == 2 and api.results(bob).reels == [story.parent / "ad-bob.mp4"]
    entry = batch.to_json()["stories"][1]
    assert entry["variables"] == {"who": "bob"} and entry["shots"]["reused"] == ["s1", "s2"]
    assert entry["campaign"] == str(story.parent / "campaign.html")


def test_bad_stories_raise_from_load_and_are_reported_by_validate_and_render(tmp_path: Path) -> None:
    (tmp_path / "story.yaml").write_text("title: x\nshots: [{id: a, prompt: '{nobody} waves'}]\n")
    with pytest.raises(StoryValidationError) as err:
        api.load_story(tmp_path)
    checked = api.validate(tmp_path)
    assert not checked.ok and checked.problems == err.value.problems
    entry = checked.to_json()
    assert entry["valid"] is False and entry["problems"][0]["line"] == 2
    batch = api.render([tmp_path])
    assert not batch.ok and batch.reports[0].status == "failed"
    assert batch.to_json()["total"]["failed"] == 1


def _readme_campaign_script() -> str:
    readme = REPO.joinpath("README.md").read_text()
    match = re.search(r"<!-- campaign-script -->\n```python\n(.*?)```", readme, re.S)
    assert match, "README.md lost its campaign script"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_campaign_script_runs_as_written(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _readme_campaign_script()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "to render: {'done': 0, 'stored': 0, 'stale': 0, 'damaged': 0, 'todo': 4}"
    for product, line in zip(("lamp", "mug"), lines[1:3], strict=True):
        assert line == f"ok {product} {tmp_path / 'campaign' / product / 'reel.mp4'}"
    assert lines[3] == "total: {'rendered': 8, 'reused': 0, 'current': 0, 'failed': 0} ok"
    assert (tmp_path / "campaign" / "mug" / "renders" / "index.html").is_file()
