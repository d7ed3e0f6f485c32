"""Reporter verbosity, progress bars only on terminals, and consoles that never wrap when piped."""

from __future__ import annotations

import io

from rich.console import Console

from storyreel.reporting import NORMAL, QUIET, VERBOSE, Reporter, make_console, plural, shown_path


def _reporter(verbosity: int = NORMAL, terminal: bool = False) -> tuple[Reporter, io.StringIO]:
    out = io.StringIO()
    return Reporter(Console(file=out, force_terminal=terminal, width=100), verbosity), out


def test_verbosity_filters_notices_and_details_never_warnings_or_errors() -> None:
    for verbosity, shown in ((QUIET, set()), (NORMAL, {"notice"}), (VERBOSE, {"notice", "detail"})):
        reporter, out = _reporter(verbosity)
        reporter.notice("notice")
        reporter.detail("detail")
        reporter.warning("look [here]")
        reporter.error("broke", "fix it")
        text = out.getvalue()
        assert {word for word in ("notice", "detail") if word in text} == shown
        assert "warning: look [here]" in text and "error: broke" in text and "hint: fix it" in text


def test_bars_draw_on_a_terminal_and_leave_logs_clean() -> None:
    reporter, out = _reporter(terminal=True)
    with reporter.bar("demo: reel", total=4.0) as update:
        update(2.0)
        update(4.0)
    assert "demo: reel" in out.getvalue() and "100%" in out.getvalue()
    for reporter, out in (_reporter(terminal=False), _reporter(QUIET, terminal=True)):
        with reporter.bar("demo: reel", total=4.0) as update:
            update(4.0)
        assert out.getvalue() == ""


def test_consoles_do_not_wrap_when_not_a_terminal(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    console = make_console()
    buffer = io.StringIO()
    console.file = buffer
    long = "word " * 60
    console.print(long)
    assert buffer.getvalue().strip() == long.strip()  # one line, whatever $COLUMNS says
    console.width = 40  # an explicit width still wins
    assert console.width == 40


def test_plural_and_shown_path(tmp_path, monkeypatch) -> None:
    assert [plural(1, "story", "stories"), plural(2, "story", "stories"), plural(0, "shot")] == [
        "1 story",
        "2 stories",
        "0 shots",
    ]
    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "a" / "story.yaml") == "a/story.yaml"
    assert shown_path("/elsewhere/story.yaml") == "/elsewhere/story.yaml"


def test_status_spins_on_a_terminal_and_is_one_line_in_logs() -> None:
    reporter, out = _reporter(terminal=False)
    with reporter.status("loading the model …") as spinner:
        assert spinner is None
    assert out.getvalue() == "loading the model …\n"
    reporter, out = _reporter(terminal=True)
    with reporter.status("loading the model …") as spinner:
        spinner.update("still loading")
    quiet, out = _reporter(QUIET)
    with quiet.status("loading the model …"):
        pass
    assert out.getvalue() == ""
