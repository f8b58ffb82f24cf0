"""The one place errors become HTTP: every error is `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from chaser import errors
from chaser.server.disconnect import ClientGone
from chaser.server.limits import BodyTooLarge
from chaser.server.openapi import api_routes

log = logging.getLogger("chaser.server")

STATUS: dict[type[errors.ServiceError], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.Unprocessable: 422,
    errors.BadGateway: 502,
    errors.OverLimit: 429,
    errors.RangeNotSatisfiable: 416,
    errors.StorageFull: 507,
    errors.Unavailable: 503,
}

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
              415: "unsupported_media_type", 416: "range_not_satisfiable", 422: "invalid_request", 429: "over_limit", 502: "bad_gateway",
              503: "no_capacity", 507: "storage_full"}


def status_for(exc: errors.ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str, retry_after: int | None = None,
                   **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status in (429, 503, 507):
        headers["Retry-After"] = str(retry_after or 1)
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status,
                        headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str, list[dict[str, Any]]]:
    details = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        details.append({"field": loc, "message": str(err.get("msg", ""))})
        if err.get("type") == "json_invalid":
            return "invalid_json", "request body is not valid JSON", []
    if any(e["field"] == "" for e in details) and any("dictionary" in e["message"] for e in details):
        return "invalid_request", "request body must be a JSON object", details
    summary = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details[:5])
    return "invalid_request", summary or "invalid request", details


def _allowed(request: Request) -> str:
    """The methods some route of the app takes at this request's path."""
    exact: set[str] = set()
    templated: set[str] = set()
    for route in api_routes(request.app.routes):
        if route.path_regex.match(request.url.path):
            # a literal path (/v1/images/import) is that resource, not a {name} one
            (templated if "{" in route.path else exact).update(route.methods or ())
    return ", ".join(sorted(exact or templated))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error shape."""

    @app.exception_handler(errors.ServiceError)
    async def chaser_error(_: Request, exc: errors.ServiceError) -> JSONResponse:
        response = error_response(status_for(exc), exc.code, exc.message, exc.retry_after)
        if isinstance(exc, errors.RangeNotSatisfiable) and exc.size is not None:
            response.headers["Content-Range"] = f"bytes */{exc.size}"  # RFC 9110 §15.5.17
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, details = _validation_message(exc)
        status = 400 if code == "invalid_json" else 422
        return error_response(status, code, message, None,
                              **({"details": details} if details else {}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-read failures in a 400
            return error_response(413, "payload_too_large", "request body is too large")
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        response = error_response(exc.status_code, code, message)
        if exc.status_code == 405:  # says what is allowed: every route of that path's methods
            response.headers["Allow"] = _allowed(request)
        return response

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, exc: ClientGone) -> Response:
        # Nobody is listening; the status (nginx's "client closed request") is for logs.
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error (logged on the server)")
