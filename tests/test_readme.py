"""README.md works when pasted: every fenced block runs as written, against a ``--demo`` proxy.

Python blocks run in a fresh interpreter and shell blocks in ``bash -euo pipefail``, each in an empty
folder, with ``localhost:8080`` pointed at a ``retention-proxy --demo`` this module starts on a free
port; JSON and YAML blocks must parse. A block is skipped only when the line before it is an HTML
comment ``<!-- not-run: why -->`` (it installs packages, starts a server in the foreground, or needs a
GPU), and the reason must be given.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest
import yaml

from support.proxy_process import ProxyProcess, proxy_env

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!-- not-run: (.+\S) -->$")
RUNNABLE = {"python", "bash", "sh", "shell", "json", "yaml"}
MIN_RUN = 8  # a guard against a parser change that quietly runs nothing


class Block(NamedTuple):
    line: int
    lang: str
    code: str
    skip_reason: str | None


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        start, lang = index, match.group(1).lower()
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.match(previous.strip())
        blocks.append(Block(start + 1, lang, "\n".join(lines[start + 1 : end]) + "\n", marker and marker.group(1)))
        index = end + 1
    return blocks


BLOCKS = [block for block in readme_blocks(README.read_text(encoding="utf-8")) if block.lang in RUNNABLE]
TO_RUN = [block for block in BLOCKS if block.skip_reason is None]


@pytest.fixture(scope="module")
def demo() -> Iterator[ProxyProcess]:
    proxy = ProxyProcess("--demo")
    try:
        yield proxy
    finally:
        proxy.stop()


def run_env() -> dict[str, str]:
    env = proxy_env()
    # The commands the README names (python, retention-proxy) are this environment's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_the_readme_has_runnable_blocks_and_every_skip_says_why() -> None:
    assert len(TO_RUN) >= MIN_RUN, [block.line for block in TO_RUN]
    text = README.read_text(encoding="utf-8")
    markers = [line for line in text.splitlines() if "not-run" in line]
    assert all(NOT_RUN.match(line.strip()) for line in markers), markers


@pytest.mark.parametrize("block", TO_RUN, ids=[f"line{block.line}-{block.lang}" for block in TO_RUN])
def test_readme_block_runs_as_written(block: Block, demo: ProxyProcess, tmp_path: Path) -> None:
    if block.lang == "json":
        orjson.loads(block.code)
        return
    if block.lang == "yaml":
        assert yaml.safe_load(block.code)
        return
    code = block.code.replace("localhost:8080", demo.url.removeprefix("http://"))
    if block.lang == "python":
        script = tmp_path / "block.py"
        script.write_text(code, encoding="utf-8")
        command = [sys.executable, str(script)]
    else:
        command = ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(command, cwd=tmp_path, env=run_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"README.md line {block.line} failed:\n{result.stdout}\n{result.stderr}"
