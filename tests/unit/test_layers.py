"""The layers hold (docs/architecture.md): `router` never imports `actors`, the pure cores
stay pure, and only the stores factory names a ledger backend. import-linter checks the
contracts in pyproject.toml; this test runs it so that CI fails when one breaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    kept = [line for line in done.stdout.splitlines() if line.endswith(" KEPT")]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert len(kept) >= 3, done.stdout[-2000:]
