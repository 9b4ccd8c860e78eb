"""The provider store: upstream providers managed at run time, their API keys sealed.

`aura-router providers add|list|show|remove|import` and `POST/GET/DELETE
/admin/providers/{name}` keep providers in the ledger backend (one `providers` row per
name, `router.ledger.*`), beside the ones `aura-router.toml` and the environment declare
(docs/configuration.md, "Provider store"). This module is the pure-ish core:

* `StoredProvider`: one provider as stored, validated exactly like a `[[providers]]`
  table (`_validated` is the one call into `router.catalog`), with a public view that
  says only whether keys are present and how many.
* `KeyBox`: AES-GCM (cryptography's `AESGCM`) under the key ROUTER_SECRET_KEY gives
  (`secret_key`), a random 96-bit nonce per sealing, and the provider's name as
  associated data, so a sealed key list moved to another provider's row does not open.
* `ProviderStore`: what `Stores.provider_store` offers (`put`, `get`, `list`, `remove`,
  `version`, `public`), over a backend's `ProviderRows` that only ever sees sealed keys.
* `parse_import`: TOML (`[[providers]]`) or JSON (a list, or `{"providers": [...]}`),
  every entry checked, each error naming its entry.
* `overlay`: the catalog with the stored providers put over the configured ones.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Protocol
from urllib.parse import urlsplit

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from router.catalog import Catalog, ProviderSpec
from router.errors import AuraError, BadRequest, ConfigError
from router.redact import display_url

__all__ = ["FIELDS", "ImportResult", "KeyBox", "ProviderAdmin", "ProviderInvalid",
           "ProviderRows", "ProviderStore", "SealedProvider", "SecretKeyMissing",
           "SecretKeyWrong", "StoredProvider", "import_providers", "key_box", "overlay",
           "parse_import", "provider_listing", "public_view", "secret_key", "spec_view"]

# What a stored provider is made of (a `[[providers]]` table's common fields).
FIELDS = ("name", "kind", "base_url", "api_keys", "strategy", "max_concurrent",
          "timeout_connect_s", "timeout_idle_s")
MIN_PASSPHRASE = 32  # characters; HKDF is not a password hash, so the entropy must be there
_NONCE_BYTES = 12
_SEALED_PREFIX = "v1:"
_HKDF_SALT = b"aura-router provider store v1"
_HKDF_INFO = b"provider api keys"
_WHERE = "<provider store>"
_FIELD = re.compile(r"(\w+): ")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ProviderInvalid(BadRequest):
    """A provider entry that a `[[providers]]` table would not accept; `param` names the
    field."""

    retryable = False


class SecretKeyMissing(BadRequest):
    """Keys were given but ROUTER_SECRET_KEY is unset: they are never stored in clear."""

    retryable = False

    def __init__(self, name: str) -> None:
        super().__init__(f"provider {name!r}: api_keys cannot be stored without "
                         "ROUTER_SECRET_KEY (the key that encrypts them at rest; "
                         "docs/configuration.md, \"Provider store\"); set it and restart, "
                         "or store the provider without keys", param="api_keys")


class SecretKeyWrong(AuraError):
    """A sealed key list that does not open under this ROUTER_SECRET_KEY."""

    def __init__(self, name: str) -> None:
        super().__init__(f"provider {name!r}: its stored api_keys cannot be decrypted with "
                         "this ROUTER_SECRET_KEY (they were stored under another key, or "
                         "the row was altered; key rotation is not supported yet: store the "
                         "provider again with its keys)")


def secret_key(value: str | None) -> bytes | None:
    """The 32-byte AES-256-GCM key ROUTER_SECRET_KEY stands for (None: unset).

    Accepted: 64 hex digits, or urlsafe/standard base64 of exactly 32 bytes (what
    `python -c "import secrets; print(secrets.token_urlsafe(32))"` prints), used as is;
    else a passphrase of at least 32 characters, stretched with HKDF-SHA256. Shorter is
    refused: a guessable key would make the encryption decorative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    raw = b""
    if re.fullmatch(r"[A-Za-z0-9_\-+/]{42,44}={0,2}", text):
        unpadded = text.rstrip("=").replace("+", "-").replace("/", "_")
        try:
            raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) == 32:
        return raw
    if len(text) < MIN_PASSPHRASE:
        raise ConfigError(
            f"ROUTER_SECRET_KEY is too short ({len(text)} characters): give 32 random bytes "
            "as base64 or hex (python -c \"import secrets; print(secrets.token_urlsafe(32))\") "
            f"or a passphrase of at least {MIN_PASSPHRASE} characters")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT,
                info=_HKDF_INFO).derive(text.encode())


class KeyBox:
    """Seals and opens one provider's key list (AES-256-GCM, the name as associated data)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def _aad(name: str) -> bytes:
        return b"aura-router provider:" + name.encode()

    def seal(self, name: str, keys: tuple[str, ...]) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, orjson.dumps(list(keys)), self._aad(name))
        return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, name: str, sealed: str) -> tuple[str, ...]:
        try:
            if not sealed.startswith(_SEALED_PREFIX):
                raise ValueError("unknown format")
            blob = base64.urlsafe_b64decode(sealed[len(_SEALED_PREFIX):])
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                       self._aad(name))
            keys = orjson.loads(plain)
        except (InvalidTag, ValueError, binascii.Error, orjson.JSONDecodeError):
            raise SecretKeyWrong(name) from None
        return tuple(str(k) for k in keys)


def _validated(entry: Mapping[str, Any]) -> ProviderSpec:
    """The one place a stored entry is checked: as one `[[providers]]` table
    (`router.catalog.parse_provider`, the config file's own rules), then a kind that
    needs a key must have one."""
    from router.catalog import parse_provider

    name = entry.get("name")
    who = f"provider {name!r}" if isinstance(name, str) and name else "provider"
    try:
        spec = parse_provider(dict(entry), _WHERE, allow_without_key=True)
    except ConfigError as exc:
        text = str(exc).removeprefix(_WHERE + ": ")
        found = _FIELD.match(text)
        param = found.group(1) if found else None
        raise ProviderInvalid(f"{who}: {text}", param=param) from None
    if spec.base_url and not urlsplit(spec.base_url).hostname:
        raise ProviderInvalid(f"{who}: base_url: names no host", param="base_url")
    if not spec.has_credential:
        raise ProviderInvalid(f"{who}: kind {spec.kind} needs api_keys (a list of one or "
                              "more keys)", param="api_keys")
    return spec


@dataclass(frozen=True)
class StoredProvider:
    """One provider as the store keeps it (keys in clear only in memory)."""

    name: str
    kind: str
    base_url: str
    api_keys: tuple[str, ...] = field(repr=False, default=())
    strategy: str = "round_robin"
    max_concurrent: int = 256
    timeout_connect_s: float = 10.0
    timeout_idle_s: float = 300.0

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> "StoredProvider":
        """Validated as a `[[providers]]` table of exactly these fields."""
        if not isinstance(entry, Mapping):
            raise ProviderInvalid("a provider must be an object (a table)")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            name = entry.get("name")
            who = f"provider {name!r}" if isinstance(name, str) and name else "provider"
            guess = difflib.get_close_matches(str(unknown[0]), FIELDS, n=1)
            advice = f"did you mean {guess[0]!r}?" if guess else f"fields: {', '.join(FIELDS)}"
            raise ProviderInvalid(f"{who}: unknown field {unknown[0]!r}; {advice}",
                                  param=str(unknown[0]))
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ProviderInvalid("a stored provider's name is 1 to 64 letters, digits, '.', "
                                  "'_' or '-', starting with a letter or digit", param="name")
        spec = _validated(entry)
        return cls(spec.name, spec.kind, spec.base_url, spec.api_keys, spec.strategy,
                   spec.max_concurrent, spec.timeout_connect_s, spec.timeout_idle_s)

    def spec(self) -> ProviderSpec:
        return ProviderSpec(self.name, self.kind, self.base_url, self.api_keys, self.strategy,
                            self.max_concurrent, self.timeout_connect_s, self.timeout_idle_s)

    def settings(self) -> dict[str, Any]:
        """Everything but the name and the keys (what a row keeps in clear)."""
        return {"kind": self.kind, "base_url": self.base_url, "strategy": self.strategy,
                "max_concurrent": self.max_concurrent,
                "timeout_connect_s": self.timeout_connect_s,
                "timeout_idle_s": self.timeout_idle_s}


def public_view(name: str, settings: Mapping[str, Any], key_count: int,
                source: str) -> dict[str, Any]:
    """What admin output and the CLI show: never a key, a prefix or a ciphertext, and a
    base URL without its userinfo or query (where a key may ride along)."""
    shown = dict(settings)
    if isinstance(shown.get("base_url"), str):
        shown["base_url"] = display_url(shown["base_url"])
    return {"name": name, **shown, "keys_present": key_count > 0, "key_count": key_count,
            "source": source}


def spec_view(spec: ProviderSpec, source: str) -> dict[str, Any]:
    """The public view of a configured (or running) provider."""
    return public_view(spec.name, StoredProvider(
        spec.name, spec.kind, spec.base_url, (), spec.strategy, spec.max_concurrent,
        spec.timeout_connect_s, spec.timeout_idle_s).settings(), len(spec.api_keys), source)


@dataclass(frozen=True)
class SealedProvider:
    """A row as a backend stores it: the settings as JSON, the keys sealed."""

    name: str
    settings: str  # JSON of `StoredProvider.settings()`
    sealed_keys: str | None  # None: no keys
    key_count: int
    updated_at: float

    def public(self, source: str = "store") -> dict[str, Any]:
        return public_view(self.name, json.loads(self.settings), self.key_count, source)


class ProviderRows(Protocol):
    """A backend's `providers` table (or Redis hash): rows by name, and a version that
    every change bumps in the same transaction."""

    async def put(self, row: SealedProvider) -> bool:
        """Insert or replace; True when the name was new."""
        ...

    async def get(self, name: str) -> SealedProvider | None: ...

    async def list(self) -> list[SealedProvider]:
        """Every row, by name."""
        ...

    async def remove(self, name: str) -> bool: ...

    async def version(self) -> int: ...


def key_box(router_secret_key: str | None) -> KeyBox | None:
    """The box ROUTER_SECRET_KEY opens (None: unset; `ConfigError`: unusable)."""
    key = secret_key(router_secret_key)
    return KeyBox(key) if key is not None else None


class ProviderStore:
    """`Stores.provider_store`: stored providers over one backend's rows."""

    def __init__(self, rows: ProviderRows, box: KeyBox | None,
                 clock: Any = None) -> None:
        import time

        self.rows = rows
        self.box = box
        self.clock = clock or time.time

    def _seal(self, provider: StoredProvider) -> SealedProvider:
        sealed = None
        if provider.api_keys:
            if self.box is None:
                raise SecretKeyMissing(provider.name)
            sealed = self.box.seal(provider.name, provider.api_keys)
        return SealedProvider(provider.name, json.dumps(provider.settings(), sort_keys=True),
                              sealed, len(provider.api_keys), self.clock())

    def _open(self, row: SealedProvider) -> StoredProvider:
        keys: tuple[str, ...] = ()
        if row.sealed_keys is not None:
            if self.box is None:
                raise SecretKeyWrong(row.name)
            keys = self.box.open(row.name, row.sealed_keys)
        return StoredProvider(row.name, api_keys=keys, **json.loads(row.settings))

    async def put(self, provider: StoredProvider) -> bool:
        """Store (or replace) it; True when the name was new. `SecretKeyMissing` when it
        has keys and no ROUTER_SECRET_KEY is set."""
        return await self.rows.put(self._seal(provider))

    async def get(self, name: str) -> StoredProvider | None:
        """With its keys opened (`SecretKeyWrong` if they cannot be)."""
        row = await self.rows.get(name)
        return self._open(row) if row is not None else None

    async def list(self) -> list[StoredProvider]:
        return [self._open(row) for row in await self.rows.list()]

    async def public(self, name: str | None = None) -> list[dict[str, Any]]:
        """The public views (one provider's, or all), read without opening any key."""
        if name is not None:
            row = await self.rows.get(name)
            return [row.public()] if row is not None else []
        return [row.public() for row in await self.rows.list()]

    async def rows_and_keys(self) -> tuple[list[StoredProvider], dict[str, str]]:
        """Every provider whose keys open, and why each other one does not, by name (the
        runtime serves the rest rather than none)."""
        good: list[StoredProvider] = []
        bad: dict[str, str] = {}
        for row in await self.rows.list():
            try:
                good.append(self._open(row))
            except SecretKeyWrong as exc:
                bad[row.name] = str(exc)
        return good, bad

    async def remove(self, name: str) -> bool:
        return await self.rows.remove(name)

    async def version(self) -> int:
        return await self.rows.version()


class ProviderAdmin(Protocol):
    """What the admin API asks of the runtime about providers (`Gateway.provider_admin`);
    each change is running in this process when the call returns."""

    async def put(self, name: str, body: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Store `body` (the fields but the name) as provider `name`: (created, view)."""
        ...

    async def remove(self, name: str) -> dict[str, Any]:
        """`{"name", "deleted": true}`; NotFound, or Conflict for a configured one."""
        ...

    async def describe(self, name: str) -> dict[str, Any]:
        """The public view, its source, and live stats when running."""
        ...


def parse_import(text: str, fmt: str | None = None) -> tuple[list[StoredProvider], list[str]]:
    """Providers from TOML (`[[providers]]` tables, as in aura-router.toml) or JSON (a list
    of objects, or `{"providers": [...]}`); `fmt` "toml" | "json" | None (guess). Returns
    the valid entries and one error per invalid one, naming it (`providers[2] 'x': ...`);
    a name given twice is an error on its second entry."""
    fmt = fmt or ("json" if text.lstrip().startswith(("[{", "{", "[\n", "[ ", "[]"))
                  and not text.lstrip().startswith("[[") else "toml")
    try:
        if fmt == "json":
            data: Any = json.loads(text)
        elif fmt == "toml":
            data = tomllib.loads(text)
        else:
            raise ProviderInvalid(f"unknown import format {fmt!r}: toml or json")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        return [], [f"not valid {fmt.upper()}: {exc}"]
    entries = data.get("providers") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        return [], ["expected a list of providers ([[providers]] tables in TOML; a JSON "
                    "list, or an object with a \"providers\" list)"]
    if isinstance(data, dict) and set(data) - {"providers"}:
        extra = sorted(set(data) - {"providers"})
        return [], [f"only providers can be imported; found {', '.join(map(repr, extra))}"]
    good: list[StoredProvider] = []
    errors: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"providers[{i}]" + (f" {name!r}" if isinstance(name, str) and name else "")
        try:
            provider = StoredProvider.from_entry(entry)
        except ProviderInvalid as exc:
            detail = exc.message.split(": ", 1)[1] if exc.message.startswith(
                "provider") and ": " in exc.message else exc.message
            errors.append(f"{label}: {detail}")
            continue
        if provider.name in seen:
            errors.append(f"{label}: name {provider.name!r} given twice")
            continue
        seen.add(provider.name)
        good.append(provider)
    return good, errors


@dataclass(frozen=True)
class ImportResult:
    """What `import_providers` did: names created, names replaced, one error per entry
    that was not stored (naming it)."""

    created: tuple[str, ...]
    replaced: tuple[str, ...]
    errors: tuple[str, ...]


async def import_providers(store: ProviderStore, text: str,
                           fmt: str | None = None) -> ImportResult:
    """`aura-router providers import`: every valid entry stored, every other one reported."""
    good, errors = parse_import(text, fmt)
    created: list[str] = []
    replaced: list[str] = []
    for provider in good:
        try:
            (created if await store.put(provider) else replaced).append(provider.name)
        except SecretKeyMissing as exc:
            errors.append(f"{provider.name!r}: {exc.message}")
    return ImportResult(tuple(created), tuple(replaced), tuple(errors))


async def provider_listing(store: ProviderStore | None,
                           configured: Mapping[str, ProviderSpec]) -> list[dict[str, Any]]:
    """`aura-router providers list`: every provider the router would run, by name, as
    public views with their source (a stored one hides a configured one of its name)."""
    views = {name: spec_view(spec, "config") for name, spec in configured.items()}
    if store is not None:
        views.update({view["name"]: view for view in await store.public()})
    return [views[name] for name in sorted(views)]


def overlay(base: Catalog, stored: list[ProviderSpec]) -> Catalog:
    """The catalog with the stored providers over the configured ones.

    A stored provider named like a configured one replaces it (every route naming it now
    reaches the stored one); a new name is added: `name/model` reaches it (as for any
    provider), and a catalog model that no provider served (an empty route: no provider
    of its kind was configured) is routed to it as the environment's providers are. The
    configured routes are left as they are: a new provider never takes traffic a
    configured one carries unless it replaces it by name."""
    if not stored:
        return base
    from router.catalog import _default_route

    providers = {**base.providers, **{spec.name: spec for spec in stored}}
    added = {spec.name for spec in stored} - set(base.providers)
    added_only = {name: providers[name] for name in added}
    models = dict(base.models)
    if added_only:
        for mid, model in base.models.items():
            if not model.route:
                route = _default_route(model.kind, model.id, added_only)
                if route:
                    models[mid] = replace(model, route=route)
    return Catalog(providers=providers, models=models, aliases=base.aliases)
