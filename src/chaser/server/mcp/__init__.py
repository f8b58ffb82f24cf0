"""The MCP endpoint (`/v1/mcp`): the `terminal` tool and friends over the core.

    endpoint  the route, the SDK's Streamable HTTP session manager, tools/list and tools/call
    tools     one function per tool, each a few lines over `chaser.core`
    schemas   tool arguments, results and the JSON schemas advertised for them
"""

from __future__ import annotations

from chaser.server.mcp.endpoint import McpEndpoint

__all__ = ["McpEndpoint"]
