"""The campaign page, eval results in plain words, and sharp poster frames."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from ingredients_model.metrics.face_similarity import ArcFaceBackend, CurricularFaceBackend, DlibBackend
from storyreel.campaign import write_campaign
from storyreel.cli import app
from storyreel.engines.video import FrameWriter
from storyreel.evaluate import EVAL_VERSION
from storyreel.poster import laplacian_variance, sharpest_frame
from storyreel.quality import (
    GOOD_RESEMBLANCE,
    protocol_scores,
    resemblance,
    shot_notes,
    shot_verdicts,
    story_protocol_scores,
)
from storyreel.runner import RenderOptions, load_stories, render_stories
from tests.helpers.projects import make_project


def test_resemblance_labels_are_backend_aware() -> None:
    for backend in (ArcFaceBackend, CurricularFaceBackend, DlibBackend):  # good is stricter than same-person
        assert GOOD_RESEMBLANCE[backend.name] > backend.same_person_threshold
    assert resemblance(0.52, "arcface", 0.3) == "good"
    assert resemblance(0.52, "dlib", 0.4) == "borderline"  # the same number means less from dlib
    assert resemblance(0.35, "dlib", 0.4) == "poor"
    assert resemblance(0.45, "new-backend", 0.3) == "good" and resemblance(None, "dlib", 0.4) == "unknown"


def test_shot_results_in_words() -> None:
    evaluation = {"backend": "arcface", "threshold": 0.3}
    entry = {
        "status": "ok",
        "frames": 8,
        "flags": ["stale", "extra_faces", "missing:bo"],
        "characters": {
            "al": {"similarity": 0.61, "frames_seen": 8},
            "bo": {"similarity": 0.2, "frames_seen": 3, "duplicate_frames": 2},
            "cy": {"similarity": None, "frames_seen": 0},
        },
    }
    assert [(v.name, v.label, v.sentence) for v in shot_verdicts(entry, evaluation)] == [
        ("al", "good", "good resemblance (0.61)"),
        ("bo", "poor", "poor resemblance (0.20), missing in 5 of 8 frames, seen twice in 2 frames"),
        ("cy", "unknown", "not found, missing in 8 of 8 frames"),
    ]
    assert shot_notes(entry) == [
        "rendered for another prompt or cast than the story has now: render it again",
        "more faces than cast members on average",
    ]
    assert shot_notes({"status": "not_rendered"}) == ["not rendered"]
    protocols = {"released": {"label": "released (…)"}, "strict": {"label": "strict (…)"}}
    entry["released"], entry["strict"] = None, {"face_sim": 0.412, "clip_score": 28.31, "fid": None}
    assert protocol_scores(entry, {**evaluation, "protocols": protocols}) == [
        ("released (…)", "released: not computed"),
        ("strict (…)", "strict: face similarity 0.41, CLIPScore 28.3"),
    ]
    other = {"status": "ok", "released": None, "strict": {"face_sim": 0.2, "fid": 3.0}}
    shots = {"a": entry, "b": other, "c": {"status": "not_rendered"}}
    story = {**evaluation, "protocols": protocols, "shots": shots}
    assert story_protocol_scores(story, ["a", "b", "c", "gone"]) == [  # means over the shots scored
        ("released (…)", "released: not computed"),
        ("strict (…)", "strict: face similarity 0.31, CLIPScore 28.3, FID 3.0 (mean of 2 shots)"),
    ]


def test_the_poster_is_the_sharpest_frame_inside_the_shots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    detail = Image.fromarray(rng.integers(0, 255, (96, 160, 3), dtype=np.uint8))
    path = tmp_path / "v.mp4"
    with FrameWriter(path, 160, 96, 12, crf=10, preset="ultrafast") as out:
        for index in range(24):
            sharp = index in (5, 20)
            out.write(np.asarray(detail if sharp else detail.filter(ImageFilter.GaussianBlur(3))))
    assert laplacian_variance(detail) > 10 * laplacian_variance(detail.filter(ImageFilter.GaussianBlur(3)))
    index, image = sharpest_frame(path, count=24)
    assert index in (5, 20) and image.size == (160, 96)
    assert sharpest_frame(path, spans=[(12, 24)], count=24)[0] == 20  # only inside the shots


def test_campaign_page_over_stories_and_formats(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "c", shots=2, size="160x96")
    text = story.read_text().replace("file: reel.mp4", 'file: "ad-${who}.mp4", formats: [5:3, 9:16]')
    story.write_text(text.replace("title: Test Reel", "title: Ad for ${who}\nvars: {who: ~}"))
    reports = render_stories([story], RenderOptions(variables={"who": ["ann", "bob"]}))
    root = story.parent
    page = root / "campaign.html"
    assert all(r.campaign == page for r in reports)
    assert [r.reels for r in reports] == [
        [root / "ad-ann-5x3.mp4", root / "ad-ann-9x16.mp4"],
        [root / "ad-bob-5x3.mp4", root / "ad-bob-9x16.mp4"],
    ]
    # an evaluation of one variant, as `storyreel eval` writes it: shown in words on the next page
    person = {"similarity": 0.3, "frames_seen": 4}
    strict = {"face_sim": 0.3, "clip_score": None, "fid": None}
    shots = {"s1": {"status": "ok", "frames": 8, "characters": {"nora": person}, "strict": strict}}
    protocols = {"strict": {"label": "strict (ours)"}}
    evaluation = {
        "version": EVAL_VERSION,
        "backend": "dlib",
        "threshold": 0.4,
        "shots": shots,
        "protocols": protocols,
    }
    (root / "renders" / "ad-ann" / "eval.json").write_text(json.dumps(evaluation))
    written = write_campaign(load_stories([story], {"who": ["ann", "bob"]}))
    assert written == page
    html = page.read_text()
    assert "Ad for ann" in html and "Ad for bob" in html and html.count("<video") == 4
    assert "poor resemblance (0.30), missing in 4 of 8 frames" in html and "(weakest shot: s1)" in html
    assert "strict: face similarity 0.30 (mean of 1 shot)" in html
    assert "Not evaluated yet" in html  # bob's variant
    links = re.findall(r'(?:src|href|poster)="([^"#]+)"', html)
    assert links and all((root / unquote(link)).is_file() for link in links), links
    assert (root / "renders" / "ad-bob" / "poster-9x16.jpg").is_file()
    args = [
        "campaign",
        str(story),
        "--set",
        "who=ann",
        "--set",
        "who=bob",
        "-o",
        str(tmp_path / "c.html"),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == "storyreel.campaign/1" and document["campaign"] == str(tmp_path / "c.html")
    assert [entry["variables"] for entry in document["stories"]] == [{"who": "ann"}, {"who": "bob"}]
    with Image.open(root / "renders" / "ad-bob" / "poster-9x16.jpg") as poster:
        assert poster.size == (96, 170)  # 9:16 on the clips' shorter side, even
