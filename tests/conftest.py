"""Shared fixtures: the fake providers and a real router process, plus hypothesis profiles.

`--hypothesis-profile=thorough` runs the property tests with many more examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings

from examples.ws_client import answer_pings_only_while_open
from tests.fakes import FakeProviderServer
from tests.backends import drop_postgres_schemas
from tests.harness import JWT_SECRET, RouterProcess, router_config

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=10_000, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile("ci")

answer_pings_only_while_open()  # the tests' websocket client, as the reference client does


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(autouse=False)
def clean_fake(fake: FakeProviderServer) -> Iterator[FakeProviderServer]:
    fake.state.reset()
    yield fake
    fake.state.reset()


@pytest.fixture(scope="session")
def router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    data_dir: Path = tmp_path_factory.mktemp("router")
    with RouterProcess(data_dir, router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env={"AUTH_COOKIE_SECRET": JWT_SECRET}) as proc:
        yield proc


def pytest_sessionstart(session: pytest.Session) -> None:
    drop_postgres_schemas(leftovers=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_postgres_schemas()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures tests record (`record_property("figures", ...)`) belong in CI's log:
    printed at the end, whether or not output is captured and on whichever xdist worker
    the test ran."""
    for report in terminalreporter.stats.get("passed", []) + \
            terminalreporter.stats.get("failed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == "figures" and report.when == "call":
                terminalreporter.write_line(str(value))
