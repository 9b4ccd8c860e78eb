"""AWS Bedrock: Claude through `InvokeModel` / `InvokeModelWithResponseStream` (kind
`bedrock`), or an OpenAI-compatible Bedrock gateway (kind `bedrock_gateway`).

Native (`bedrock`): the body is Anthropic's Messages body without `model` and `stream`
and with `anthropic_version: "bedrock-2023-05-31"` (the client's `anthropic-beta`
header becomes the body's `anthropic_beta` list); the model id is in the path,
URL-encoded: `POST /model/{id}/invoke` or `/invoke-with-response-stream`. Each call is
signed with botocore's SigV4 signer (service `bedrock`, the provider's `region`). A
stream is the binary event stream (`router.protocols.eventstream`), decoded with
botocore's parser (both CRCs checked) into the Anthropic events its `chunk`s carry;
usage is in them (`message_start`, `message_delta`); an exception frame is an `error`
event; a corrupt frame ends the stream with an error.

A model that is not Claude (no `anthropic.` in its id) goes through Converse /
ConverseStream instead (`router.providers.bedrock_converse`): its body is written from
the Messages body, its whole answer rewritten as an Anthropic message by the provider's
pool wrapper, and its stream events turned into Anthropic's by the same decoder.

A credential is `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`, `profile:NAME` (an
AWS profile, resolved by botocore, whose refreshable credentials it renews), or
`bearer:KEY` (a Bedrock API key, sent as `Authorization: Bearer` instead of a signature).

Model ids: a catalog Claude id (or alias) becomes Bedrock's id, and an id without a
geography gets the inference-profile prefix of the provider's region (`us.`, `eu.`,
`apac.`, `us-gov.`): recent Claude models are served on demand only through a
cross-region inference profile. A prefixed id or an ARN is sent as given.
"""

from __future__ import annotations

import copy
import logging
import re
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote

import orjson

from router.protocols.eventstream import AnthropicEventStreamDecoder
from router.protocols.sse import SseEvent
from router.providers.bedrock_converse import (ConverseEvents, anthropic_answer,
                                               converse_body, uses_converse)
from router.providers.base import HttpCall, Provider, StreamDecoder, UpstreamRequest
from router.providers.http import HttpAdapter
from router.providers.openai import bearer_headers
from router.providers.openai_compatible import OpenAICompatibleAdapter
from router.providers.spec import ProviderSpec
from router.providers.whole_answer import (RewritingPool, RewritingProvider, WholeAnswer,
                                           undated_rate_limit)

log = logging.getLogger(__name__)

BEDROCK_VERSION = "bedrock-2023-05-31"
SERVICE = "bedrock"

# Catalog Claude ids -> Bedrock's base model ids (https://docs.aws.amazon.com/bedrock/
# latest/userguide/models-supported.html). Aliases (dated ids) resolve through the
# catalog first; the dated ids are listed too for routes that name them.
def _shipped_ids() -> dict[str, str]:
    """Catalog id -> Bedrock id: `[modes.bedrock]` of the shipped catalog, and each
    Bedrock id's dated Anthropic id (`claude-sonnet-4-5-20250929`) as well."""
    text = resources.files("router").joinpath("catalog.toml").read_text(encoding="utf-8")
    ids = dict(tomllib.loads(text).get("modes", {}).get("bedrock", {}))
    ids.update({base.split(".", 1)[1].rsplit("-v", 1)[0]: base for base in list(ids.values())})
    return ids


MODEL_IDS: dict[str, str] = _shipped_ids()
GEOGRAPHIES = ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca.")


def profile_prefix(region: str | None) -> str:
    """The cross-region inference profile's prefix for a region ('' when unknown)."""
    region = (region or "").lower()
    if region.startswith("us-gov-"):
        return "us-gov."
    if region.startswith(("us-", "ca-")):
        return "us."
    if region.startswith("eu-"):
        return "eu."
    if region.startswith("ap-"):
        return "apac."
    return ""


def bedrock_model_id(model: str, region: str | None) -> str:
    """The id to call: a catalog id mapped, and a bare Anthropic id given the region's
    inference-profile prefix; anything else (prefixed ids, ARNs) as given."""
    base = MODEL_IDS.get(model, model)
    if base.startswith("anthropic.") and not base.startswith(GEOGRAPHIES):
        return profile_prefix(region) + base
    return base


def native_id(model: str) -> str:
    """A Bedrock model id (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`) as the catalog's
    dated Anthropic id (`claude-sonnet-4-5-20250929`); other ids as given."""
    rest = model
    for geography in GEOGRAPHIES:
        if rest.startswith(geography):
            rest = rest[len(geography):]
            break
    if not rest.startswith("anthropic."):
        return model
    rest = rest[len("anthropic."):]
    head, sep, version = rest.rpartition("-v")
    if sep and version.replace(":", "").isdigit():
        rest = head
    return rest


def mode_upstream(spec: ProviderSpec, model: str, kind: str) -> str | None:
    """The Bedrock id of a catalog model this provider can serve (Claude), else None."""
    if kind != "anthropic" or model not in MODEL_IDS:
        return None
    return bedrock_model_id(model, spec.region)


def parse_credential(credential: str) -> tuple[str, str, str | None] | None:
    """(access key id, secret, session token) from `AKID:SECRET[:TOKEN]`; None for a
    profile or a bearer key."""
    if credential.startswith(("profile:", "bearer:")):
        return None
    parts = credential.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("a Bedrock credential is ACCESS_KEY_ID:SECRET[:SESSION_TOKEN], "
                         "profile:NAME or bearer:API_KEY")
    return parts[0], parts[1], parts[2] if len(parts) == 3 and parts[2] else None


def check_key(credential: str) -> str | None:
    """Why a configured credential cannot be used (config validation), or None."""
    try:
        parse_credential(credential)
    except ValueError as exc:
        return str(exc)
    if credential in ("profile:", "bearer:"):
        return "profile: and bearer: need a name / a key after the colon"
    return None


@lru_cache(maxsize=16)
def _profile_credentials(profile: str) -> Any:
    import botocore.session

    found = botocore.session.Session(profile=profile).get_credentials()
    if found is None:
        raise ValueError(f"AWS profile {profile!r} has no credentials")
    return found


def _credentials(credential: str) -> Any:
    from botocore.credentials import Credentials

    parsed = parse_credential(credential)
    if parsed is None:  # refreshable: botocore renews it when it is near its expiry
        return _profile_credentials(credential[len("profile:"):]).get_frozen_credentials()
    return Credentials(*parsed)


def sign(method: str, url: str, headers: dict[str, str], body: bytes, credential: str,
         region: str) -> list[tuple[bytes, bytes]]:
    """SigV4 headers (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token`) for a call;
    the host is the URL's (as the connection pool sends it)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.exceptions import BotoCoreError

    if credential.startswith("bearer:"):
        return [(b"authorization", b"Bearer " + credential[len("bearer:"):].encode())]
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    try:
        SigV4Auth(_credentials(credential), SERVICE, region).add_auth(request)
    except (BotoCoreError, ValueError) as exc:
        # Sent unsigned: Bedrock refuses it (403) and the call fails over. Raising here
        # would leave the credential counted in flight by the provider's pool.
        log.warning("a Bedrock call could not be signed (%s); it goes unsigned",
                    type(exc).__name__)
        return []
    return [(k.lower().encode(), v.encode()) for k, v in request.headers.items()
            if k.lower() not in headers]


def region_of(base_url: str) -> str | None:
    """The region in a Bedrock runtime endpoint's host name
    (`bedrock-runtime[-fips].{region}.amazonaws.com`), if it is one."""
    match = re.match(r"https?://bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com",
                     base_url)
    return match[1] if match else None


def invoke_body(request: UpstreamRequest) -> bytes:
    """The Anthropic body as InvokeModel reads it."""
    body = orjson.loads(request.body)
    body.pop("model", None)
    body.pop("stream", None)
    body["anthropic_version"] = BEDROCK_VERSION
    betas = [b.strip() for k, v in request.passthrough_headers
             if k.lower() == "anthropic-beta" for b in v.split(",") if b.strip()]
    if betas and "anthropic_beta" not in body:
        body["anthropic_beta"] = betas
    return orjson.dumps(body)


class BedrockAdapter(HttpAdapter):
    kind = "bedrock"
    apis = ("anthropic.messages",)
    provider_fields = frozenset({"region"})
    serves_kinds = ("anthropic",)  # Claude routes here when no Anthropic provider is set
    check_key = staticmethod(check_key)
    # bedrock-runtime serves only model calls (listing models is the control plane's,
    # another host and another permission): a probe can only connect.
    connect_only_why = "Bedrock's runtime host has no cheap authenticated call: connect only"
    region: str = "us-east-1"
    base_url: str = ""

    def bound(self, spec: ProviderSpec) -> "BedrockAdapter":
        """This kind for one provider: its region (the entry's, else its endpoint's, else
        us-east-1) and its URL (the signature covers the host and path)."""
        bound = copy.copy(self)
        bound.region = spec.region or region_of(spec.base_url) or self.region
        bound.base_url = spec.base_url
        return bound

    def connect(self, spec: ProviderSpec) -> Provider:
        return BedrockProvider(spec, self.bound(spec))

    def mode_upstream(self, spec: ProviderSpec, model: str, kind: str) -> str | None:
        return mode_upstream(spec, model, kind)

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        model = bedrock_model_id(request.model, self.region)
        if uses_converse(model):
            body = converse_body(request.body)
            operation = "converse-stream" if request.stream else "converse"
        else:
            body = invoke_body(request)
            operation = "invoke-with-response-stream" if request.stream else "invoke"
        path = f"/model/{quote(model, safe='')}/{operation}"
        headers = {"content-type": "application/json",
                   "accept": "application/vnd.amazon.eventstream" if request.stream
                   else "application/json"}
        signed = sign("POST", self.base_url + path, headers, body, credential,
                      self.region) if credential else []
        return HttpCall(path, tuple((k.encode(), v.encode()) for k, v in headers.items())
                        + ((b"user-agent", b"aura-router"),) + tuple(signed), body)

    def decoder(self) -> StreamDecoder:
        return BedrockDecoder()


class BedrockDecoder(AnthropicEventStreamDecoder):
    """InvokeModel's `chunk`s, and ConverseStream's events, as Anthropic events."""

    def __init__(self) -> None:
        super().__init__()
        self.converse = ConverseEvents()

    def other(self, event_type: str, payload: bytes) -> list[SseEvent]:
        return self.converse.feed(event_type, payload)


MAX_ANSWER_BYTES = 64 * 1024 * 1024


class ConverseAnswer(WholeAnswer):
    """A whole Converse answer, read and rewritten as the Anthropic message it is."""

    def __init__(self, response: Any, body: bytes) -> None:
        super().__init__(response, body, content_type="application/json")


class ConversePool(RewritingPool):
    """The provider's connection pool, rewriting whole Converse answers (a stream is the
    decoder's business), and giving a 429 the wait the key rests (Bedrock says none)."""

    async def rewrite(self, call: HttpCall, response: Any) -> Any:
        if response.status == 429:  # ThrottlingException gives no Retry-After
            return await undated_rate_limit(response)
        if response.status != 200 or not call.path.endswith("/converse"):
            return response
        model = unquote(call.path.split("/")[-2])
        raw = await response.read(MAX_ANSWER_BYTES)
        try:
            body = anthropic_answer(raw, model)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            body = raw  # the pipeline says the answer could not be read
        return ConverseAnswer(response, body)


class BedrockProvider(RewritingProvider):
    pool_class = ConversePool


class BedrockGatewayAdapter(OpenAICompatibleAdapter):
    """An OpenAI-compatible gateway in front of Bedrock (Bedrock Access Gateway,
    LiteLLM, or Bedrock's own OpenAI-compatible endpoint): Chat Completions with an
    optional bearer key, Bedrock's model ids in `model`."""

    provider_fields = frozenset({"headers", "region"})
    serves_kinds = ("anthropic",)

    def __init__(self) -> None:
        super().__init__("bedrock_gateway", flattens_text=False)
        self.region: str | None = None

    def bound(self, spec: ProviderSpec) -> "BedrockGatewayAdapter":
        bound = super().bound(spec)
        assert isinstance(bound, BedrockGatewayAdapter)
        bound.region = spec.region
        return bound

    def mode_upstream(self, spec: ProviderSpec, model: str, kind: str) -> str | None:
        return mode_upstream(spec, model, kind)

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        model = bedrock_model_id(request.model, self.region)
        body = request.body
        if model != request.model:
            parsed = orjson.loads(body)
            parsed["model"] = model
            body = orjson.dumps(parsed)
        return HttpCall("/chat/completions", bearer_headers(request, credential)
                        + self.headers, body)


ADAPTER = BedrockAdapter()
GATEWAY = BedrockGatewayAdapter()
