"""Story variables: vars:, ${name}, $$, --set and variants; every problem at file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from storyreel.cli.app import app
from storyreel.story import StoryValidationError, load_story, parse_assignments, variants
from storyreel.story.variables import substitute, variable_names

STORY = """\
title: ${product} day
vars:
  product: Shoes
  price: 5
  city: ~
output: {file: "ad-${product}.mp4"}
defaults: {engine: preview}
cast:
  ann: {photos: [cast/ann/1.jpg], description: a woman}
shots:
  - id: one
    prompt: "{ann} holds the ${product}, $$${price} in ${city}"
    caption: Only $$${price}
credits: See you in ${city}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "cast" / "ann").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "cast" / "ann" / "1.jpg")
    (tmp_path / "ad.yaml").write_text(STORY, encoding="utf-8")
    return tmp_path


def problems(path: Path, values: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(StoryValidationError) as caught:
        load_story(path, values)
    return [f"{p.line}:{p.column} {p.path}: {p.message}" for p in caught.value.problems]


def test_values_from_vars_and_set_fill_every_allowed_field(root: Path) -> None:
    story = load_story(root / "ad.yaml", {"city": "Paris", "product": "Bags"})
    assert story.title == "Bags day"
    assert story.output.file == "ad-Bags.mp4"
    assert story.shots[0].resolved_prompt(story) == "a woman holds the Bags, $5 in Paris"
    assert story.shots[0].caption == "Only $5"
    assert story.credits == "See you in Paris"
    assert story.variables == {"product": "Bags", "price": "5", "city": "Paris"}


def test_a_variable_without_a_value_is_a_problem_where_it_is_used(root: Path) -> None:
    assert problems(root / "ad.yaml") == [
        "12:56 shots[0].prompt: variable 'city' has no value",
        "14:21 credits: variable 'city' has no value",
    ]


def test_unknown_and_misplaced_variables_and_set_are_reported_at_their_line(root: Path) -> None:
    text = STORY.replace("caption: Only $$${price}", "caption: ${prise} ${")
    text = text.replace("id: one", "id: one-${product}").replace(
        "description: a woman", 'description: "a ${product} fan"'
    )
    (root / "ad.yaml").write_text(text, encoding="utf-8")
    found = problems(root / "ad.yaml", {"city": "Rome", "colour": "red"})
    assert found == [
        "2:1 vars: --set colour: no such variable in vars:",
        "9:48 cast.ann.description: variables cannot be used here",
        "11:9 shots[0].id: variables cannot be used here",
        "13:14 shots[0].caption: unknown variable 'prise'",
        "13:23 shots[0].caption: '${' without a closing '}'",
    ]
    with pytest.raises(StoryValidationError) as caught:
        load_story(root / "ad.yaml", {"city": "Rome"})
    hints = [p.hint for p in caught.value.problems if "prise" in p.message]
    assert hints == ["did you mean 'price'? known: city, price, product"]


def test_substitution_rules() -> None:
    values = {"a": "x", "b": "$${c}"}
    assert substitute("${a}$${a}$$ $5 ${ a }", values) == ("x${a}$ $5 x", [])
    assert substitute("${b}", values)[0] == "$${c}"  # values are literal
    assert variable_names("${a} $${b} ${c} ${a}") == ["a", "c"]


def test_set_parsing_and_variants() -> None:
    assert parse_assignments(["a=1", "b=x=y", "a=2", "a=1"]) == {"a": ["1", "2"], "b": ["x=y"]}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_assignments(["oops"])
    assert variants({"a": ["1", "2"], "b": ["x"]}) == [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]
    assert variants({}) == [{}]


def test_validate_and_plan_take_set(root: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(root / "ad.yaml"), "--set", "city=Oslo"])
    assert ok.exit_code == 0, ok.output
    assert "Only $5" in ok.output and "warning" not in ok.output  # the reel file uses a variable
    missing = runner.invoke(app, ["validate", str(root / "ad.yaml")])
    assert missing.exit_code == 1 and "has no value" in missing.output
    plan = runner.invoke(app, ["plan", str(root / "ad.yaml"), "--set", "city=Oslo", "--set", "city=Rome"])
    assert plan.exit_code == 2 and "takes one variant" in " ".join(plan.output.replace("│", " ").split())
    planned = runner.invoke(app, ["plan", str(root / "ad.yaml"), "--set", "city=Oslo"])
    assert planned.exit_code == 0, planned.output and "todo" in planned.output


def test_set_without_a_variable_reel_file_warns(root: Path) -> None:
    text = STORY.replace('output: {file: "ad-${product}.mp4"}\n', "")
    (root / "ad.yaml").write_text(text, encoding="utf-8")
    story = load_story(root / "ad.yaml", {"city": "Oslo"})
    assert story.output.file == "ad.mp4"  # not story.yaml: named after the story file
    (warning,) = story.warnings
    assert warning.path == "" and "variants overwrite each other's reel" in warning.message
