"""Progress display: terminal bar vs plain lines for pipes and cron mail (no TensorFlow)."""
from __future__ import annotations

import io
import re

import pytest

from bottleneck.console.progress import Progress, format_duration


class FakeStream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds: float):
        self.now += seconds


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (7.4, "7s"), (59.6, "1m00s"), (62, "1m02s"), (3599, "59m59s"), (3600 + 5 * 60 + 20, "1h05m"),
     (-3, "0s"), (None, "?"), (float("nan"), "?"), (float("inf"), "?")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_tty_mode_redraws_in_place_with_rate_and_eta():
    stream, clock = FakeStream(tty=True), FakeClock()
    with Progress(1000, "Bottlenecks", stream=stream, clock=clock) as progress:
        for _ in range(10):
            clock.advance(1.0)
            progress.update(30)
    out = stream.getvalue()
    assert "\r" in out
    assert "\x1b" not in out
    assert "300/1000" in out
    assert "30.0/s" in out  # 300 items in 10 s
    assert "ETA" in out and "23s" in out  # 700 left at 30/s
    assert "elapsed" in out
    assert out.endswith("\n")  # the line is finished so later output starts on its own line
    assert "done in 10s" in out.split("\r")[-1]


def test_tty_mode_throttles_redraws():
    stream, clock = FakeStream(tty=True), FakeClock()
    progress = Progress(100_000, "Images", stream=stream, clock=clock)
    for _ in range(10_000):  # 10,000 updates in 1 s of fake time
        clock.advance(0.0001)
        progress.update()
    progress.close()
    assert stream.getvalue().count("\r") <= 1 + 10 + 1  # initial + <= 10/s + final


def test_tty_mode_wipes_a_longer_previous_line():
    stream, clock = FakeStream(tty=True), FakeClock()
    progress = Progress(0, "Images", stream=stream, clock=clock)  # unknown total: count only
    clock.advance(1)
    progress.update(12345)
    clock.advance(1)
    progress.update(1)
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames[1]) >= len(frames[0])


def test_plain_mode_has_no_control_characters_and_respects_interval():
    stream, clock = FakeStream(tty=False), FakeClock()
    with Progress(1000, "Bottlenecks", stream=stream, clock=clock, interval_s=10.0) as progress:
        for _ in range(100):  # 100 s of work, an update each second
            clock.advance(1.0)
            progress.update(10)
    out = stream.getvalue()
    assert "\r" not in out and "\x1b" not in out and "\b" not in out
    lines = out.splitlines()
    assert len(lines) == 10 + 1  # one per 10 s, plus the final line
    assert lines[0] == "Bottlenecks: 100/1000 (10%), 10.0/s, 1m30s left"
    assert lines[-1] == "Bottlenecks: 1000/1000 (100%), 10.0/s, done in 1m40s"
    assert all(re.fullmatch(r"[ -~]+", line) for line in lines)  # printable ASCII only


def test_plain_mode_interval_counts_from_the_last_line():
    stream, clock = FakeStream(tty=False), FakeClock()
    progress = Progress(50, "Images", stream=stream, clock=clock, interval_s=30.0)
    times = []
    for _ in range(50):
        clock.advance(7.0)
        before = stream.getvalue().count("\n")
        progress.update()
        if stream.getvalue().count("\n") > before:
            times.append(clock.now)
    progress.close()
    assert times and all(later - earlier >= 30.0 for earlier, later in zip(times, times[1:]))
    assert stream.getvalue().count("\n") == len(times) + 1


def test_plain_mode_short_job_prints_only_the_final_line():
    stream, clock = FakeStream(tty=False), FakeClock()
    with Progress(3, "Images", stream=stream, clock=clock) as progress:
        for _ in range(3):
            clock.advance(0.5)
            progress.update()
    assert stream.getvalue() == "Images: 3/3 (100%), 2.0/s, done in 2s\n"


def test_failure_inside_the_block_is_reported_as_stopped():
    stream, clock = FakeStream(tty=False), FakeClock()
    with pytest.raises(RuntimeError):
        with Progress(10, "Images", stream=stream, clock=clock) as progress:
            clock.advance(4)
            progress.update(4)
            raise RuntimeError("boom")
    assert stream.getvalue() == "Images: 4/10 (40%), 1.0/s, stopped after 4s\n"


def test_disabled_writes_nothing():
    for tty in (True, False):
        stream, clock = FakeStream(tty=tty), FakeClock()
        with Progress(10, "Images", stream=stream, clock=clock, enabled=False, interval_s=0) as progress:
            for _ in range(10):
                clock.advance(5)
                progress.update()
        assert stream.getvalue() == ""


def test_close_is_idempotent_and_updates_after_close_are_ignored():
    stream, clock = FakeStream(tty=False), FakeClock()
    progress = Progress(2, "Images", stream=stream, clock=clock, interval_s=0)
    clock.advance(1)
    progress.update(2)
    progress.close()
    progress.close()
    progress.update(5)
    assert stream.getvalue().count("done in") == 1
    assert progress.count == 2


def test_nothing_to_do_prints_nothing():
    stream = FakeStream(tty=False)
    with Progress(0, "Images", stream=stream, clock=FakeClock()):
        pass
    assert stream.getvalue() == ""


def test_closed_stream_does_not_raise():
    stream, clock = FakeStream(tty=False), FakeClock()
    progress = Progress(5, "Images", stream=stream, clock=clock, interval_s=0)
    stream.close()
    clock.advance(1)
    progress.update()
    progress.close()


def test_stream_without_isatty_is_plain():
    class Sink:
        def __init__(self):
            self.parts = []

        def write(self, text):
            self.parts.append(text)

        def flush(self):
            pass

    sink, clock = Sink(), FakeClock()
    with Progress(2, "Images", stream=sink, clock=clock) as progress:
        clock.advance(1)
        progress.update(2)
    assert "".join(sink.parts) == "Images: 2/2 (100%), 2.0/s, done in 1s\n"


def test_default_stream_is_stderr(capsys):
    with Progress(1, "Images", clock=FakeClock()) as progress:
        progress.update()
    captured = capsys.readouterr()
    assert captured.out == "" and "Images: 1/1" in captured.err
