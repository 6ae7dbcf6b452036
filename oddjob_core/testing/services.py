"""Helpers for tests that need a server: let service-backed suites skip locally but fail in CI."""

from __future__ import annotations

import os

import pytest


def service_unavailable(what: str) -> None:
    """Skip the test when a service is down, but fail under CI (``CI=true``) where it must be up."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{what} (CI=true: services must be running)")
    pytest.skip(what)
