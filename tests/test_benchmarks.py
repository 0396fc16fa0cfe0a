"""The benchmark harness keeps working: ``python -m benchmarks --quick`` runs every section.

The numbers of a quick run mean nothing and nothing here looks at time; the harness's own sanity
checks (status codes, records stored, chunk accounting) make it fail if it stops measuring what it
says it measures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTIONS = (
    "machine", "in_process", "streams", "throughput", "memory", "proxy", "sse_parse",
    "guard_load", "encryption", "chat_backend", "targets",
)  # fmt: skip


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
    # The standalone benchmarks run as sections of the one command.
    assert set(results["guard_load"]["records"]) == {"unrelated", "prompt", "output"}
    assert any(name.startswith("stored_response/") for name in results["encryption"]["results"])
    assert results["chat_backend"]["request"]["chat"]["chunks"] >= 1
    for heading in ("### 7. Log guard", "### 8. Encryption at rest", "### 9. The chat backend"):
        assert heading in done.stdout


def test_peers_run_measures_the_proxy_beside_the_upstream_and_names_what_it_skipped(tmp_path: Path) -> None:
    output = tmp_path / "peers.json"
    env = {name: value for name, value in os.environ.items() if name != "BENCHMARK_LITELLM_PYTHON"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--peers", "--quick", "--json", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=55, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    peers = json.loads(output.read_text(encoding="utf-8"))["peers"]
    names = list(peers["targets"])
    assert names[:2] == ["upstream (direct)", "retention-proxy"]
    # Every target that ran answered every route it serves, and was loaded; a missing peer is named.
    assert "LiteLLM proxy" in peers["skipped"]
    assert ("nginx" in names) == (shutil.which("nginx") is not None)
    for route in ("chat", "passthrough", "stored", "stream_10"):
        assert set(peers["latency"][route]) == set(names)
    assert peers["latency"]["stream_10"]["upstream (direct)"]["chunks_out"] == 11  # 10 deltas and [DONE]
    assert all(peers["load"][name]["requests"] > 0 for name in names)
    assert peers["workers"]["1"]["requests"] > 0 and peers["workers"]["2"]["requests"] > 0
    assert "| retention-proxy |" in done.stdout and "Skipped LiteLLM proxy" in done.stdout
