"""The benchmark harness keeps working: ``python -m benchmarks --quick`` runs every section.

The numbers of a quick run mean nothing and nothing here looks at time; the harness's own sanity
checks (status codes, records stored, chunk accounting) make it fail if it stops measuring what it
says it measures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("machine", "in_process", "streams", "throughput", "memory", "proxy", "sse_parse", "targets")


def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=55,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text(encoding="utf-8"))
    assert [section for section in SECTIONS if section not in results] == []
    assert set(results["in_process"]) >= {"access_log_off", "access_log_on", "mongo_emulator"}
    assert set(results["streams"]) >= {"passthrough", "chat", "responses_stored"}
    assert set(results["throughput"]) >= {"passthrough", "chat_metered"}
    assert set(results["proxy"]) >= {"passthrough", "chat_metered"}
    assert results["memory"]["cases"]
    assert all(set(verdict) == {"figure", "target", "measured", "met"} for verdict in results["targets"])
    # The printed report is the markdown table the README quotes.
    assert "| figure | target | measured | met |" in done.stdout
    assert "### 5. Proxy mode" in done.stdout
    assert [case["megabytes"] for case in results["sse_parse"]["cases"]] == [0.25, 2.0]
    assert "### 6. SSE parse time" in done.stdout
