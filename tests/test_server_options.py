"""The proxy's server options: TLS both ways, --log-level, --log-format json, the banner."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from retention_middleware.demo import EchoModel

from support.proxy_process import ProxyProcess, run_command
from support.servers import serve
from support.tls import self_signed

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hello there"}]}


def test_the_proxy_terminates_tls(run_proxy: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "proxy")
    proxy = run_proxy("--demo", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    assert proxy.url.startswith("https://")
    with httpx.Client(base_url=proxy.url, timeout=20, verify=ssl.create_default_context(cafile=str(cert))) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    with pytest.raises(httpx.ConnectError):  # and it is really TLS: an unverified certificate is refused
        httpx.get(proxy.url + "/healthz", timeout=20)


def test_an_https_upstream_is_checked_against_the_ca_bundle_with_a_client_certificate(
    run_proxy: Callable[..., ProxyProcess], tmp_path: Path
) -> None:
    server_cert, server_key = self_signed(tmp_path, "upstream")
    client_cert, client_key = self_signed(tmp_path, "client")
    tls = {"ssl_certfile": str(server_cert), "ssl_keyfile": str(server_key), "ssl_ca_certs": str(client_cert),
           "ssl_cert_reqs": ssl.CERT_REQUIRED}  # fmt: skip
    with serve(EchoModel(), **tls) as url:
        upstream = url.replace("http://", "https://")
        mutual = ["--upstream-client-cert", str(client_cert), "--upstream-client-key", str(client_key)]
        trusted = run_proxy("--upstream", upstream, "--upstream-ca-bundle", str(server_cert), *mutual)
        untrusted = run_proxy("--upstream", upstream)  # the system CAs do not know the upstream's certificate
        no_client_cert = run_proxy("--upstream", upstream, "--upstream-ca-bundle", str(server_cert))
        with httpx.Client(timeout=20) as client:
            assert client.post(trusted.url + "/v1/chat/completions", json=CHAT).status_code == 200
            for proxy in (untrusted, no_client_cert):
                answer = client.post(proxy.url + "/v1/chat/completions", json=CHAT)
                assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_unavailable"


def test_an_unreadable_ca_bundle_fails_at_start_up_naming_the_setting(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    result = run_command("--demo", "--upstream-ca-bundle", str(junk))
    assert result.returncode == 2
    assert "--upstream-ca-bundle / RETENTION_UPSTREAM_CA_BUNDLE" in result.stderr


def test_uvicorn_lifecycle_lines_are_not_uvicorn_error(run_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = run_proxy("--demo")
    proxy.wait_started()
    proxy.stop()
    lifecycle = [line for line in proxy.stderr.seen if "Application startup complete" in line]
    assert lifecycle == ["INFO uvicorn: Application startup complete."]
    assert not any("uvicorn.error" in line for line in proxy.stderr.seen)


def test_log_level_warning_keeps_info_lines_out_but_not_the_access_log(run_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = run_proxy("--demo", "--log-level", "warning")
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert proxy.access_records(1)[0]["status"] == 200
    proxy.stop()
    assert not any(line.startswith("INFO ") for line in proxy.stderr.seen)
    assert any(line.startswith("WARNING retention_middleware: store is memory") for line in proxy.stderr.seen)


def test_log_format_json_prints_every_line_banner_included_as_json(run_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = run_proxy("--demo", "--log-format", "json", "--grace", "45s")
    proxy.wait_started()
    proxy.stop()
    entries = [orjson.loads(line) for line in proxy.stderr.seen]  # every line parses
    banner = entries[0]
    assert banner["url"] == proxy.url and banner["settings"]["grace"] == "45s"
    assert banner["settings"]["log_guard"] == "true" and banner["settings"]["ttl"] == "30d"
    assert {entry["logger"] for entry in entries[1:]} >= {"uvicorn", "retention_middleware"}
    assert all(set(entry) >= {"ts", "level", "logger", "message"} for entry in entries)


def test_the_banner_lists_every_setting_as_the_settings_read_it(run_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = run_proxy("--demo", "--grace", "90s")
    proxy.wait_started()
    lines = dict(line.strip().split(": ", 1) for line in proxy.stderr.seen[1:] if line.startswith("  "))
    from retention_middleware.settings import RetentionSettings

    assert set(RetentionSettings().public_view()) <= set(lines)
    assert lines["grace"] == "90s" and lines["workers"] == "1" and lines["log_level"] == "info"
    assert lines["log_guard"] == "true" and lines["allow_request_opt_in"] == "false"  # as RETENTION_* reads them
    assert lines["upstream_timeout"] == "10m"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--workers", "zero"], "--workers / RETENTION_WORKERS"),
        (["--log-level", "loud"], "--log-level / RETENTION_LOG_LEVEL"),
        (["--log-format", "xml"], "--log-format / RETENTION_LOG_FORMAT"),
        (["--ssl-keyfile", "key.pem"], "--ssl-keyfile / RETENTION_SSL_KEYFILE"),
        (["--ssl-certfile", "/nonexistent.pem"], "--ssl-certfile / RETENTION_SSL_CERTFILE"),
    ],
)
def test_bad_server_options_exit_2_naming_the_flag(args: list[str], named: str) -> None:
    result = run_command("--demo", *args)
    assert result.returncode == 2 and named in result.stderr
