"""Fixtures of the unit tests that run against every ledger backend."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from router.config import load_config
from router.ledger.stores import BACKENDS, Stores, open_stores
from tests.backends import backend_env


@pytest.fixture(params=BACKENDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """Fresh stores of each backend `open_stores` offers, their session entered."""
    config = load_config(env=backend_env(request.param, tmp_path), cwd=tmp_path)
    opened = open_stores(config)
    async with opened.session():
        yield opened
    opened.close()
