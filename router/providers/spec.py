"""One configured provider: its kind, where it lives, its keys and its limits.

Parsed from `[[providers]]` (or implied by the environment's provider keys) in
`router.catalog`; what a kind means is its adapter's business (`router.providers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STRATEGIES = ("round_robin", "priority", "least_used")


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str
    base_url: str
    api_keys: tuple[str, ...] = field(repr=False, default=())
    strategy: str = "round_robin"
    max_concurrent: int = 256
    timeout_connect_s: float = 10.0
    timeout_idle_s: float = 300.0
    timeout_total_s: float = 1800.0  # a whole answer, first byte to last
    breaker_failures: int = 5  # consecutive failures that open the circuit
    breaker_cooldown_s: float = 30.0  # before a half-open probe
    max_tokens_field: str | None = None  # config override of where the output limit goes
    # Kind-specific fields (a kind's adapter says which it reads: `provider_fields`).
    api_version: str | None = None  # azure: the dated `api-version`, or "v1"
    deployments: tuple[tuple[str, str], ...] = ()  # azure: (upstream model id, deployment)
    headers: tuple[tuple[str, str], ...] = ()  # extra headers sent with every call
    region: str | None = None  # bedrock: the AWS region (SigV4 scope, profile prefix)
    # False: a kind that needs a key has none (kept with ALLOW_PROVIDERS_WITHOUT_KEYS).
    has_credential: bool = True
