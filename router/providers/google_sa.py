"""A Google service account, as Vertex AI's provider needs it: read from
`VERTEX_AI_SERVICE_ACCOUNT_JSON` (the JSON itself, or a path to it) or
`GOOGLE_APPLICATION_CREDENTIALS` (a path), turned into access tokens by google-auth.

`load` checks the file at start-up (a ConfigError names the setting, never the key);
`fetch_token` is blocking (google-auth's urllib3 transport) and is only ever called by
the `vertex-token` actor, in a worker thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from router.errors import ConfigError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_NEEDED = ("type", "client_email", "private_key", "token_uri")


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    project_id: str | None
    info: dict[str, Any] = field(repr=False)


def load(value: str, setting: str) -> ServiceAccount:
    text = value.strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read {path} ({exc.strerror})") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"{setting}: not a service-account JSON (not JSON)") from None
    if not isinstance(info, dict) or any(not isinstance(info.get(k), str) for k in _NEEDED):
        raise ConfigError(f"{setting}: a service-account JSON needs "
                          f"{', '.join(_NEEDED)}")
    if info["type"] != "service_account":
        raise ConfigError(f"{setting}: type is {info['type']!r}, not 'service_account'")
    return ServiceAccount(info["client_email"], info.get("project_id"), info)


def fetch_token(account: ServiceAccount) -> tuple[str, float]:
    """(an access token, when it expires in unix seconds); blocking."""
    import urllib3
    from google.auth.transport.urllib3 import Request
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        account.info, scopes=[SCOPE])
    credentials.refresh(Request(urllib3.PoolManager()))
    expiry = credentials.expiry.replace(tzinfo=timezone.utc).timestamp()
    return credentials.token, expiry
