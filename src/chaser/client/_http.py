"""What the sync and async clients share about talking HTTP: setup, answers, failures."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from chaser.models import OutputEvent

from ._api import Call
from ._config import ENV_KEY, Config
from ._errors import (
    APIError,
    AuthenticationError,
    ChaserError,
    ConnectionError,
    TimeoutError,
    error_from_response,
)

T = TypeVar("T")

VERSION = "0.1.0"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 2
# Streams carry a keep-alive at least every 15 s; silence longer than this means the
# connection is dead and the stream is resumed on a new one.
STREAM_READ_TIMEOUT = 45.0


def client_options(config: Config, timeout: float | None) -> dict[str, Any]:
    """Keyword arguments for `httpx.Client` / `httpx.AsyncClient` (minus the transport)."""
    headers = {"User-Agent": f"chaser-python/{VERSION}", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    t = DEFAULT_TIMEOUT if timeout is None else timeout
    return {
        "base_url": config.api_url,
        "headers": headers,
        "timeout": httpx.Timeout(t, connect=min(t, 10.0)),
        "follow_redirects": False,
    }


def request_timeout(call: Call[Any], default: float | None) -> httpx.Timeout | None:
    """The timeout for one call: long-running calls may outwait the client default."""
    if call.read_timeout is None:
        return None
    base = DEFAULT_TIMEOUT if default is None else default
    read = max(base, call.read_timeout)
    return httpx.Timeout(base, connect=min(base, 10.0), read=read)


def request_kwargs(call: Call[Any], default_timeout: float | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"params": call.params or None}
    if call.json is not None:
        kwargs["json"] = call.json
    if call.content is not None:
        kwargs["content"] = call.content
    if call.headers:
        kwargs["headers"] = call.headers
    t = request_timeout(call, default_timeout)
    if t is not None:
        kwargs["timeout"] = t
    return kwargs


def parse_response(call: Call[T], response: httpx.Response, config: Config) -> T:
    """Return the parsed body of a successful answer, or raise the typed error."""
    if response.is_success:
        try:
            body = response.json()
        except ValueError:
            raise ChaserError(
                f"{call.method} {call.path}: the server at {config.api_url} answered "
                f"HTTP {response.status_code} with a body that is not JSON; "
                "is CHASER_API_URL pointing at a Chaser server?"
            ) from None
        return call.parse(body)
    raise api_error(response, config)


def api_error(response: httpx.Response, config: Config) -> APIError:
    """The typed error for a failed answer, with a hint when no key was configured."""
    err = error_from_response(response)
    if response.status_code == 404 and config.api_url.endswith("/v1"):
        err.message += (f" (hint: the API URL {config.api_url!r} ends in /v1; give the "
                        "server's root, as http://127.0.0.1:8080: the SDK adds /v1 itself)")
    if isinstance(err, AuthenticationError) and not config.api_key:
        err.message = (
            f"no API key configured: set {ENV_KEY}, pass --api-key / api_key=, or put "
            f"api_key in {config.config_path or 'the config file'}"
        )
    return err


def transport_error(exc: Exception, config: Config) -> ChaserError:
    """Translate an httpx failure (no answer at all) into the SDK's exceptions."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return TimeoutError(f"the server at {config.api_url} did not answer in time ({exc})")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ConnectionError(
            f"cannot reach the Chaser server at {config.api_url} ({_reason(exc)}); "
            "is it running? Start one with `chaser server`, or point CHASER_API_URL "
            "(or --api-url) at a running server",
            url=config.api_url,
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ChaserError(f"invalid API URL {config.api_url!r}: {exc}")
    return ConnectionError(
        f"connection to the Chaser server at {config.api_url} failed: {_reason(exc)}",
        url=config.api_url,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text


def output_bytes(event: OutputEvent) -> bytes:
    """The exact bytes of an output chunk (decoding `data_b64` when the server sent it)."""
    if event.data_b64 is not None:
        import base64

        return base64.b64decode(event.data_b64)
    return event.data.encode("utf-8", "surrogateescape")
