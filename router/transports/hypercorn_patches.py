"""How the router's patches of hypercorn are put in place and recognised.

Each patch (hypercorn_guard, hypercorn_socket, client_gone, ws_liveness) replaces methods
of one hypercorn class. `replace` marks every replacement with the patch's name, so that
`replaced` can tell whether that patch is in place: installing is idempotent, and the
code that relies on a patch can check for it.
"""

from __future__ import annotations

from typing import Any, Callable


def replace(cls: type, marker: str, **methods: Callable[..., Any]) -> None:
    """Put `methods` on `cls` in place of its own, each marked with `marker`."""
    for name, method in methods.items():
        setattr(method, marker, True)
        setattr(cls, name, method)


def replaced(cls: type, marker: str, *names: str) -> bool:
    """Whether every method in `names` of `cls` is one `replace` marked with `marker`."""
    return all(getattr(getattr(cls, name, None), marker, False) for name in names)
