"""Where a request carries its credential: what the OpenAI SDK sends (`Authorization:
Bearer`) or what the Anthropic SDK sends (`x-api-key`)."""

from __future__ import annotations


def credential_from(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def credential_in(headers: dict[bytes, bytes]) -> str | None:
    """The credential among raw ASGI headers."""
    authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
    return credential_from(authorization.decode("latin-1") if authorization else None,
                           api_key.decode("latin-1") if api_key else None)
