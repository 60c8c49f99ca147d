"""Progress bars: drawn on a terminal's stderr, silent in logs and pipes or with --no-progress."""
import io
import sys

from toolkit.utils.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_is_drawn_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert list(progress_bar(range(3), desc="decode")) == [0, 1, 2]
    assert "decode" in sys.stderr.getvalue() and "3/3" in sys.stderr.getvalue()


def test_no_bar_in_a_log_file_or_pipe(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(progress_bar(range(3), desc="decode")) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""


def test_no_progress_turns_it_off_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    list(progress_bar(range(3), desc="decode", enabled=False))
    assert sys.stderr.getvalue() == ""
