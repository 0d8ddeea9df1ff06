"""The tqdm ProgressSink: thread-safe, per-file bars only for large files, silent off a tty."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from hfsync.cli.progress import TqdmProgress
from hfsync.transfer import FileJob


def job(path: str, size: int) -> FileJob:
    return FileJob(path, size, "0" * 64, "http://x/" + path, Path("/nonexistent"), lambda p: None)


def test_not_a_tty_means_silent() -> None:
    out = io.StringIO()
    sink = TqdmProgress(file=out)
    sink.start(10, [job("a", 10)])
    sink.advance(sink_job := job("a", 10), 10)
    sink.file_done(sink_job, True)
    sink.close()
    assert out.getvalue() == ""


def test_forced_bars_count_bytes_from_many_threads() -> None:
    out = io.StringIO()
    big, small = job("model.safetensors", 128 * 2**20), job("config.json", 100)
    sink = TqdmProgress(file=out, force=True)
    sink.start(big.size + small.size, [big, small])

    def pump() -> None:
        for _ in range(128):
            sink.advance(big, 2**18)

    threads = [threading.Thread(target=pump) for _ in range(4)]
    for t in threads:
        t.start()
    sink.advance(small, 100)
    sink.file_done(small, True)
    for t in threads:
        t.join()
    assert sink._total is not None and sink._total.n == big.size + small.size
    assert set(sink._bars) == {id(big)}  # only the large file got its own bar
    sink.file_done(big, False)
    sink.close()
    text = out.getvalue()
    assert "2/2 files, 1 failed" in text and "128M" in text
