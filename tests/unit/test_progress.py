"""Progress reporting (stepstone.progress): plain lines for logs on a fake clock, rich bars that keep user
text verbatim, the grid's cell k/n countdown, and which reporter the CLI picks."""
from __future__ import annotations

import io

import pytest

from stepstone.progress import Countdown, PlainProgress, RichProgress, duration, note, silent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def plain():
    lines: list[str] = []
    clock = Clock()
    return PlainProgress(lines.append, every=30, clock=clock), clock, lines


def test_plain_lines_every_30_seconds_and_at_the_end(plain):
    progress, clock, lines = plain
    with progress("evaluate udpos [de]", 100) as bar:
        clock.now = 10
        bar.advance(10)  # 10 s since the start: no line yet
        clock.now = 30
        bar.advance(20, "loss 0.5000")
        clock.now = 45
        bar.advance(30)  # 15 s since the last line
        clock.now = 61
        bar.advance(10)
        clock.now = 80
        bar.advance(30)
    assert lines == [
        "evaluate udpos [de]: 30/100 (30%) 0:00:30 elapsed, 1/s, 0:01:10 left, loss 0.5000",
        "evaluate udpos [de]: 70/100 (70%) 0:01:01 elapsed, 1.15/s, 0:00:26 left, loss 0.5000",
        "evaluate udpos [de]: 100/100 (100%) done in 0:01:20, 1.25/s, loss 0.5000",
    ]


def test_plain_status_nested_empty_and_fast_phases(plain):
    progress, clock, lines = plain
    with progress("load backbone [x]", None):
        clock.now = 12.75
    with progress("train toy-tags", 4000) as outer:
        with progress("dev toy-tags [en]", 0):
            clock.now = 13
        clock.now = 112.75
        outer.advance(4000, "epoch 1 loss 0.1234")
    assert lines == [
        "load backbone [x]: done in 0:00:12",
        "dev toy-tags [en]: 0/0 (100%) done in 0:00:00",
        "train toy-tags: 4000/4000 (100%) 0:01:40 elapsed, 40/s, epoch 1 loss 0.1234",
        "train toy-tags: 4000/4000 (100%) done in 0:01:40, 40/s, epoch 1 loss 0.1234",
    ]


def test_a_failing_phase_prints_nothing_more(plain):
    progress, clock, lines = plain
    with pytest.raises(RuntimeError):
        with progress("load backbone ./missing", None):
            clock.now = 100
            raise RuntimeError("not a model directory")
    with pytest.raises(RuntimeError):
        with progress("train x", 10) as bar:
            clock.now = 110  # 10 s into this phase: below the interval
            bar.advance(5)
            raise RuntimeError("diverged")
    assert lines == []


def test_plain_progress_writes_to_stderr_without_ansi_codes(capsys):
    clock = Clock()
    progress = PlainProgress(clock=clock)
    with progress("tokenize xnli [de]", 3) as bar:
        clock.now = 2
        bar.advance(3)
    note(progress, "cell 1/2 a: 0:00:00 elapsed")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("tokenize xnli [de]: 3/3 (100%) done in 0:00:02, 1.5/s\n"
                            "cell 1/2 a: 0:00:00 elapsed\n")


def test_plain_progress_needs_a_positive_interval():
    with pytest.raises(ValueError, match="every must be > 0 seconds, got 0"):
        PlainProgress(every=0)


def test_silent_prints_nothing(capsys):
    with silent("x [y]", 2) as bar:
        bar.advance(2, "status")
    note(silent, "line")
    note(lambda description, total: None, "a factory without notes")
    assert capsys.readouterr() == ("", "")


def test_duration():
    assert [duration(s) for s in (0, 59.9, 61, 3600, 36000 + 62, -1)] == [
        "0:00:00", "0:00:59", "0:01:01", "1:00:00", "10:01:02", "0:00:00"]


def rich_console():
    from rich.console import Console

    stream = io.StringIO()
    return Console(file=stream, force_terminal=True, color_system=None, width=150, markup=False), stream


def test_rich_bars_show_descriptions_status_and_notes_verbatim():
    console, stream = rich_console()
    progress = RichProgress(console)
    with progress("evaluate udpos [de]", 2) as bar:
        bar.advance(2, "loss [bold]0.5")
        progress.note("cell 1/2 target/[x]: 0:00:00 elapsed")
    with progress("load backbone [b]", None):
        pass
    text = stream.getvalue()
    assert "evaluate udpos [de]" in text and "loss [bold]0.5" in text and "2/2" in text
    assert "cell 1/2 target/[x]: 0:00:00 elapsed" in text and "load backbone [b]" in text


def test_rich_phases_nest_in_one_display_and_a_failure_is_erased():
    console, stream = rich_console()
    progress = RichProgress(console)
    with progress("train toy-tags", 2) as bar:
        outer = progress._display
        with progress("dev toy-tags [en]", 1) as inner:
            assert progress._display is outer and len(outer.tasks) == 2  # rich allows one live display
            inner.advance(1)
        assert [t.description for t in outer.tasks] == ["train toy-tags"]  # the nested phase left it
        bar.advance(2)
    assert progress._display is None
    with pytest.raises(RuntimeError):
        with progress("load backbone ./missing", None):
            failing = progress._display
            raise RuntimeError("not a model directory")
    assert failing.tasks == [] and failing.live.transient and progress._display is None
    with progress("again", 1) as bar:  # usable after a failure
        bar.advance(1)
    assert "again" in stream.getvalue()


def test_countdown_lines():
    countdown = Countdown(3, start=100.0)
    assert countdown.begin("intermediate/bottleneck/a", 100.0) == "cell 1/3 intermediate/bottleneck/a: 0:00:00 elapsed"
    countdown.finish()
    assert countdown.begin("target/b", 160.0) == "cell 2/3 target/b: 0:01:00 elapsed, about 0:02:00 left"
    countdown.finish()
    assert countdown.begin("target/c", 400.0) == "cell 3/3 target/c: 0:05:00 elapsed, about 0:02:30 left"
    countdown.finish()
    assert countdown.begin("target/d", 500.0) == "cell 4/4 target/d: 0:06:40 elapsed, about 0:02:13 left"
    countdown.finish()
    assert countdown.summary(520.0) == "grid: 4 cells ran in 0:07:00"


def test_the_cli_picks_silent_rich_or_plain(monkeypatch):
    from stepstone_cli.common import progress_factory

    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    assert progress_factory(True) is silent
    assert isinstance(progress_factory(False), PlainProgress)  # pytest's stderr is not a terminal
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert isinstance(progress_factory(False), RichProgress)
    assert progress_factory(True) is silent
