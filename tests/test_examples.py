"""The files in examples/ do what they say: each is run here the way its header tells a user to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import orjson

from retention_middleware import RetentionMiddleware, RetentionSettings

from support.mongo_server import MongoTestServer
from support.proxy_process import DEADLINE, Lines, ProxyProcess, proxy_env
from support.servers import serve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CANARY = "CANARY-examples-5e0b"


def test_the_fastapi_example_serves_meters_and_stores_through_the_middleware() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "fastapi_app:app", "--host", "127.0.0.1",
         "--port", "0", "--no-access-log"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=proxy_env(),
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = Lines(process.stdout), Lines(process.stderr)
    try:
        running = stderr.until(lambda line: "Uvicorn running on" in line)
        match = re.search(r"(http://127\.0\.0\.1:\d+)", running)
        assert match is not None
        with httpx.Client(base_url=match.group(1), timeout=DEADLINE) as client:
            chat = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
                {"role": "user", "content": f"say {CANARY} twice"}]})  # fmt: skip
            assert chat.status_code == 200 and CANARY in chat.text
            created = client.post("/v1/responses", json={"model": "echo", "input": f"keep {CANARY}"})
            assert created.status_code == 200
            stored = client.get(f"/v1/responses/{created.json()['id']}")
            assert stored.status_code == 200 and stored.json()["output"][0]["content"][0]["text"] == "Noted."
        records = [orjson.loads(stdout.until(lambda line: line.startswith("{"))) for _ in range(3)]
    finally:
        process.terminate()
        process.wait(DEADLINE)
        stdout.join()
        stderr.join()
        process.stdout.close()
        process.stderr.close()
    assert [r["path"] for r in records] == ["/v1/chat/completions", "/v1/responses", records[2]["path"]]
    assert records[0]["usage"]["input_tokens"] == 3 and records[1]["stored"] is True
    assert CANARY not in "\n".join(stdout.seen + stderr.seen)


def test_the_vllm_script_launches_vllm_with_the_middleware_and_settings_it_accepts(tmp_path: Path) -> None:
    fake = tmp_path / "vllm"
    record = tmp_path / "vllm-call.json"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f"exec {sys.executable} -c 'import json, os, sys; "
        f'json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, open("{record}", "w"))\' "$@"\n'
    )
    fake.chmod(0o755)
    env = proxy_env(RETENTION_STORE="mongodb://db.internal:27017", RETENTION_TENANT_SECRET="t" * 32)
    env["PATH"] = f"{tmp_path}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        [str(EXAMPLES / "vllm_serve.sh"), "Qwen/Qwen3-4B", "--port", "8001"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    call = orjson.loads(record.read_bytes())
    argv = call["argv"]
    assert argv[:2] == ["serve", "Qwen/Qwen3-4B"] and argv[-2:] == ["--port", "8001"]
    assert argv[argv.index("--middleware") + 1] == "retention_middleware.RetentionMiddleware"
    assert "--disable-uvicorn-access-log" in argv and call["env"]["VLLM_ENABLE_RESPONSES_API_STORE"] == "0"
    # What vLLM would build from that environment: RetentionMiddleware(app), no arguments.
    variables = {name: value for name, value in call["env"].items() if name.startswith("RETENTION_")}
    settings = RetentionSettings.from_env(variables)
    assert settings.store == "mongodb://db.internal:27017" and settings.ttl.days == 30
    assert RetentionMiddleware(lambda *args: None, settings).settings.tenant_secret == "t" * 32  # type: ignore[arg-type, return-value]


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_proxy_mongodb_configuration_runs_with_tenants_from_the_gateway_header(
    mongo_server: MongoTestServer, mongo_db_name: str
) -> None:
    from retention_middleware.demo import EchoModel

    config = read_env_file(EXAMPLES / "proxy_mongodb.env")
    assert all(name.startswith("RETENTION_") for name in config)
    with serve(EchoModel()) as upstream:
        # Only where things are changes: this test's MongoDB, upstream and loopback address.
        env = {**config, "RETENTION_STORE": mongo_server.uri, "RETENTION_MONGO_DB": mongo_db_name,
               "RETENTION_UPSTREAM": upstream, "RETENTION_HOST": "127.0.0.1"}  # fmt: skip
        proxy = ProxyProcess(env=env)
        try:
            proxy.wait_started(workers=int(config["RETENTION_WORKERS"]))
            with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
                created = client.post(
                    "/v1/responses", json={"model": "m", "input": "hello"}, headers={"x-tenant-id": "team-a"}
                )
                assert created.status_code == 200, created.text
                response_id = created.json()["id"]
                assert client.get(f"/v1/responses/{response_id}", headers={"x-tenant-id": "team-a"}).status_code == 200
                assert client.get(f"/v1/responses/{response_id}", headers={"x-tenant-id": "team-b"}).status_code == 404
                assert client.get("/readyz").json()["status"] == "ready"
            records = proxy.access_records(3)
        finally:
            proxy.stop()
    assert [r["tenant"] for r in records] == ["team-a", "team-a", "team-b"]
    assert all("pid" in r for r in records)  # two workers: each line names its worker
    banner = orjson.loads(proxy.banner)  # RETENTION_LOG_FORMAT=json: the banner is JSON too
    assert banner["settings"]["workers"] == "2" and banner["settings"]["store_failure"] == "reject"


def test_every_example_is_one_of_the_tested_three() -> None:
    # A new example needs a test above; this fails until it has one.
    files = sorted(path.name for path in EXAMPLES.iterdir() if path.is_file())
    assert files == ["fastapi_app.py", "proxy_mongodb.env", "vllm_serve.sh"]
