"""The files API: `/v1/sessions/{id}/files...` and `/v1/workspaces/{name}/files...`.

The same routes twice, over a session or a workspace. Bodies stream both ways: a
download is sent as the sandbox produces it, an upload is fed to the sandbox as it
arrives, and neither is held whole in memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from chaser.core.transfers import MAX_PATH, NAME_MAX, Target
from chaser.models import WORKSPACE_PATTERN
from chaser.errors import RangeNotSatisfiable
from chaser.models.files import ArchiveWritten, FileList, FileWritten
from chaser.server.bodies import OCTET, raw_body
from chaser.server.deps import Caller, Core
from chaser.server.downloads import DownloadResponse

# What `check_path` takes: no NUL, no `..` component, names of at most NAME_MAX bytes
# and MAX_PATH in all (the schema counts characters: the same for ASCII). A file to
# write ends with a name, not a slash.
_NO_DOTDOT = r"^(?!(?:[^\x00]*/)?\.\.(?![^/]))"
_NAME = rf"[^/\x00]{{1,{NAME_MAX}}}"
PATH_PATTERN = rf"{_NO_DOTDOT}/*(?:{_NAME}/+)*(?:{_NAME})?$"
FILE_PATTERN = rf"{_NO_DOTDOT}/*(?:{_NAME}/+)*{_NAME}$"


def _path_query(pattern: str) -> Any:
    return Query(description=f"Absolute in the sandbox, or relative to /workspace; at most "
                             f"{MAX_PATH} bytes, each name at most {NAME_MAX}",
                 json_schema_extra={"pattern": pattern, "minLength": 1, "maxLength": MAX_PATH})


PathQuery = Annotated[str, _path_query(PATH_PATTERN)]
FilePathQuery = Annotated[str, _path_query(FILE_PATTERN)]
ModeQuery = Annotated[str | None, Query(description="Octal permission bits, e.g. 644",
                                        pattern="^[0-7]{3,4}$")]
_RANGE = re.compile(r"^([0-9]*)-([0-9]*)$")
# Past the end of any file: a number with more digits, or `bytes=-0`, asks this much
# (the sandbox answers with the file's size, and the range is then 416).
_BEYOND = 1 << 62


def _num(digits: str) -> int:
    # Never int() of a huge string: 20 digits or 60,000 are all just "past any end"
    return _BEYOND if len(digits) > 18 else min(int(digits), _BEYOND)


def _range(header: str | None, if_range: str | None) -> tuple[int, int] | None:
    """(start, end) of a single byte range (start < 0: a suffix; end -1: open), as RFC
    9110 reads it; None to serve the whole file: no range, an invalid one (ignored, as
    §14.2 says), several ranges (a server may ignore them, and no client of files needs
    multipart/byteranges), or an `If-Range` (this server sends no validators, so none
    can match: §13.1.5)."""
    if not header or if_range is not None:
        return None
    unit, eq, ranges = header.partition("=")
    specs = [spec.strip() for spec in ranges.split(",") if spec.strip()]
    if not eq or unit.strip().lower() != "bytes" or len(specs) != 1:
        return None
    m = _RANGE.match(specs[0])
    if not m or not (m[1] or m[2]):
        return None
    if not m[1]:  # the last n bytes; n = 0 selects nothing, so is never satisfiable
        n = _num(m[2])
        return (-n, -1) if n else (_BEYOND, -1)
    start, end = _num(m[1]), _num(m[2]) if m[2] else -1
    if end != -1 and end < start:
        return None  # invalid: ignored
    return start, end


MAX_SIZE_HINT = 2**62  # past any disk: such a length is refused as too big, not misread


def download_headers(path: str, suffix: str = "") -> dict[str, str]:
    """A download is a file to save, never a page to render: `nosniff`, and
    `Content-Disposition: attachment` with the file's name (RFC 6266), as ASCII for old
    clients and exactly as UTF-8 in `filename*` (RFC 5987)."""
    name = (path.rstrip("/").rsplit("/", 1)[-1] or "download") + suffix
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    return {"X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'attachment; filename="{ascii_name}"; '
                                   f"filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"}


def _size_hint(request: Request) -> int:
    value = request.headers.get("content-length", "")
    if not (value.isascii() and value.isdigit()):
        return 0
    return MAX_SIZE_HINT if len(value) > 19 else min(int(value), MAX_SIZE_HINT)


def _routes(router: APIRouter, target_of: Callable[..., Target]) -> None:
    """The files routes on `router`, each acting on the target `target_of` names."""
    TargetDep = Annotated[Target, Depends(target_of)]

    def bind(fn: Callable[..., Any]) -> Callable[..., Any]:
        # Annotations are strings here (PEP 563): FastAPI resolves them in the module's
        # globals, where this closure's dependency is not.
        fn.__annotations__["target"] = TargetDep
        return fn

    @router.get("/files", response_class=StreamingResponse,
                responses={200: {"content": {OCTET: {}}}, 206: {"content": {OCTET: {}}}})
    @bind
    async def read_file(path: PathQuery, target: TargetDep, core: Core, caller: Caller,
                        request: Request) -> Response:
        """A file's raw bytes; a single `Range: bytes=...` is answered 206."""
        asked = _range(request.headers.get("range"), request.headers.get("if-range"))
        start, end = asked or (0, -1)
        got = await core.transfers.read(caller.tenant, target, path, start, end)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(got.length),
                   **download_headers(path)}
        stall_s = core.settings.file_send_stall_s
        if asked is not None and got.length == 0 and asked[0] >= 0:
            await got.close()  # the first byte asked is past the end (or it is bytes=-0)
            raise RangeNotSatisfiable(f"the file has {got.size} bytes; the range asked "
                                      "starts past its end", size=got.size)
        if asked is None or got.length == 0:  # (a suffix of an empty file: the file, empty)
            return DownloadResponse(got, stall_s, media_type=OCTET, headers=headers)
        headers["Content-Range"] = f"bytes {got.start}-{got.start + got.length - 1}/{got.size}"
        return DownloadResponse(got, stall_s, status_code=206, media_type=OCTET,
                                headers=headers)

    @router.put("/files", response_model=FileWritten,
                openapi_extra={"requestBody": {"content": {OCTET: {"schema": {
                    "type": "string", "format": "binary"}}}, "required": False}})
    @bind
    async def write_file(path: FilePathQuery, target: TargetDep, core: Core, caller: Caller,
                         request: Request, mode: ModeQuery = None) -> FileWritten:
        """Write the raw body to `path` (parents made); replaced only once complete."""
        return await core.transfers.write(caller.tenant, target, path, raw_body(request), mode,
                                          _size_hint(request))

    @router.delete("/files", status_code=204, response_class=Response)
    @bind
    async def delete_file(path: PathQuery, target: TargetDep, core: Core, caller: Caller,
                          recursive: bool = False) -> Response:
        """Remove a file, link or empty directory; `recursive=true` removes a tree."""
        await core.transfers.delete(caller.tenant, target, path, recursive)
        return Response(status_code=204)

    @router.get("/files/list", response_model=FileList)
    @bind
    async def list_files(path: PathQuery, target: TargetDep, core: Core,
                         caller: Caller) -> FileList:
        """A directory's entries: name, type, size, mode, mtime."""
        return await core.transfers.list(caller.tenant, target, path)

    @router.post("/files/mkdir", status_code=204, response_class=Response)
    @bind
    async def make_dir(path: PathQuery, target: TargetDep, core: Core, caller: Caller,
                       mode: ModeQuery = None) -> Response:
        """Make a directory and its parents (an existing one is fine)."""
        await core.transfers.mkdir(caller.tenant, target, path, mode)
        return Response(status_code=204)

    @router.get("/archive", response_class=StreamingResponse,
                responses={200: {"content": {"application/x-tar": {}}}})
    @bind
    async def get_archive(path: PathQuery, target: TargetDep, core: Core,
                          caller: Caller) -> Response:
        """A tar stream of `path` (entries named from its last component), as
        `docker cp` and Docker's archive API make it."""
        got = await core.transfers.archive(caller.tenant, target, path)
        return DownloadResponse(got, core.settings.file_send_stall_s,
                                media_type="application/x-tar",
                                headers=download_headers(path, ".tar"))

    @router.put("/archive", response_model=ArchiveWritten,
                openapi_extra={"requestBody": {"content": {"application/x-tar": {"schema": {
                    "type": "string", "format": "binary"}}}, "required": False}})
    @bind
    async def put_archive(path: PathQuery, target: TargetDep, core: Core, caller: Caller,
                          request: Request) -> ArchiveWritten:
        """Extract an (uncompressed) tar stream below the directory `path`."""
        return await core.transfers.extract(caller.tenant, target, path, raw_body(request))


def _session(session_id: str) -> Target:
    return Target(session_id=session_id)


def _workspace(name: Annotated[str, Path(json_schema_extra={"pattern": WORKSPACE_PATTERN})],
               ) -> Target:
    return Target(workspace=name)


session_router = APIRouter(prefix="/v1/sessions/{session_id}", tags=["files"])
workspace_router = APIRouter(prefix="/v1/workspaces/{name}", tags=["files"])
_routes(session_router, _session)
_routes(workspace_router, _workspace)
routers: tuple[Any, ...] = (session_router, workspace_router)
