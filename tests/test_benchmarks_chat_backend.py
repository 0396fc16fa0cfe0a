"""The chat-backend benchmark keeps working: ``python -m benchmarks.chat_backend --quick`` (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_run_measures_both_backends(tmp_path: Path) -> None:
    output = tmp_path / "chat_backend.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.chat_backend", "--quick", "--json", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=55,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text(encoding="utf-8"))
    streams = [key for key in results if key.startswith("stream_")]
    assert len(streams) == 2 and "request" in results
    for key in ["request", *streams]:
        assert results[key]["chat"]["chunks"] >= 1 and results[key]["responses"]["chunks"] >= 1
    assert "| non-streamed ~1 KB request (us) |" in done.stdout
