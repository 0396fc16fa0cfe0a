"""The files every project has: the licence (with the fixtures' notice), security policy, changelog."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_the_apache_2_text_pyproject_declares() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def test_the_notice_keeps_the_fixtures_attribution() -> None:
    notice = (ROOT / "NOTICE").read_text()
    assert "vllm-project/agentic-api" in notice and "tests/fixtures/cassettes/SOURCES.md" in notice
    assert (ROOT / "tests/fixtures/cassettes/SOURCES.md").read_text().count("Apache-2.0") >= 1


def test_security_policy_and_changelog_exist_and_say_what_they_must() -> None:
    security = (ROOT / "SECURITY.md").read_text()
    assert "Reporting a vulnerability" in security and "does not promise" in security
    assert "authenticate" in security
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
