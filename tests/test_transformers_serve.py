"""retention-proxy in front of a real third-party server: Hugging Face ``transformers serve``.

Opt-in, because the server needs torch, far too heavy for CI: set ``RETENTION_TEST_TRANSFORMERS_PYTHON``
to a Python that has ``transformers[serving]`` and torch (e.g. a venv made with ``pip install
torch==2.13.0 'transformers[serving]'``). The model is built here, random weights on a tiny Llama
(``support/tiny_model.py``), so it writes nonsense, but every byte the proxy sees is the real server's:
its framing, its SSE, its usage, its error answers.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import NotFoundError, OpenAI

from support.proxy_process import ProxyProcess
from support.servers import unused_port

PYTHON = os.environ.get("RETENTION_TEST_TRANSFORMERS_PYTHON")
pytestmark = pytest.mark.skipif(
    not PYTHON, reason="opt-in: set RETENTION_TEST_TRANSFORMERS_PYTHON to a Python with transformers[serving] and torch"
)
CANARY = "CANARY-transformers-serve-4f2"
SECRET = "transformers-test-secret-0123456789"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``transformers serve`` on a loopback port with the tiny model; (base url, model name)."""
    assert PYTHON is not None
    folder = tmp_path_factory.mktemp("tiny-model")
    builder = Path(__file__).parent / "support" / "tiny_model.py"
    subprocess.run([PYTHON, str(builder), str(folder)], check=True, capture_output=True, timeout=300)
    port = unused_port()
    command = [str(Path(PYTHON).with_name("transformers")), "serve", str(folder), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu"]  # fmt: skip
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start: {(folder / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, str(folder)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


@pytest.fixture
def proxy(upstream: tuple[str, str]) -> Iterator[ProxyProcess]:
    process = ProxyProcess("--upstream", upstream[0], "--responses-backend", "chat",
                           env={"RETENTION_TENANT_SECRET": SECRET})  # fmt: skip
    process.wait_started()
    yield process
    process.stop()


def test_chat_and_a_stream_through_the_proxy_are_answered_metered_and_leave_no_content(
    upstream: tuple[str, str], proxy: ProxyProcess
) -> None:
    _, model = upstream
    client = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-tenant-a", max_retries=0)
    whole = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"{CANARY} hello there"}], max_tokens=8
    )
    assert whole.choices[0].message.content and whole.usage is not None and whole.usage.completion_tokens == 8
    chunks = list(
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"{CANARY} stream"}], max_tokens=8, stream=True
        )
    )
    assert chunks and chunks[-1].choices[0].finish_reason in ("length", "stop")
    first, second = proxy.access_records(2)
    assert (first["status"], first["stream"], first["usage"]["output_tokens"]) == (200, False, 8)
    assert (second["status"], second["stream"], second["error"]) == (200, True, None)
    proxy.stop()
    assert CANARY not in "\n".join(proxy.stdout.seen + proxy.stderr.seen)


def test_a_stored_response_through_the_chat_backend_is_read_chained_and_deleted(
    upstream: tuple[str, str], proxy: ProxyProcess
) -> None:
    _, model = upstream
    client = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-tenant-a", max_retries=0)
    first = client.responses.create(model=model, input=f"{CANARY} first turn", max_output_tokens=8)
    assert first.status in ("completed", "incomplete") and first.usage is not None
    assert client.responses.retrieve(first.id).id == first.id
    second = client.responses.create(
        model=model, input="second turn", previous_response_id=first.id, max_output_tokens=8
    )
    assert second.previous_response_id == first.id
    other = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-tenant-b", max_retries=0)
    with pytest.raises(NotFoundError):
        other.responses.retrieve(first.id)  # another tenant's key sees nothing
    client.responses.delete(first.id)
    with pytest.raises(NotFoundError):
        client.responses.retrieve(first.id)
    records = proxy.access_records(6)
    assert [r["status"] for r in records] == [200, 200, 200, 404, 200, 404]
    assert all(r["error"] in (None, "not_found") for r in records)
    proxy.stop()
    assert CANARY not in "\n".join(proxy.stdout.seen + proxy.stderr.seen)
