"""`chaser keys ...`: manage API keys (needs an admin key)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from chaser.models import TenantLimits

from ._app import AppContext, pass_app, print_fields, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


F = TypeVar("F", bound=Callable[..., Any])


def limit_options(fn: F) -> F:
    """--max-sandboxes, --max-sessions, --max-commands, --max-memory-mb."""
    for name, what in reversed([("sandboxes", "running sandboxes of every kind"),
                                ("sessions", "running sessions"),
                                ("commands", "running commands"),
                                ("memory-mb", "sum of sandbox memory limits (MiB)")]):
        fn = click.option(f"--max-{name}", type=click.IntRange(0), metavar="N",
                          help=f"Limit: {what} at once [default: the server's share].")(fn)
    return fn


def _limits(kw: dict[str, int | None]) -> TenantLimits | None:
    given = {k: v for k, v in kw.items() if v is not None}
    return TenantLimits(**given) if given else None


@click.group(epilog="""\b
Examples:
  chaser keys create --name ci
  chaser keys list
  chaser keys revoke key_123

Every key is its own tenant: what one key creates, other keys cannot see.""")
def keys() -> None:
    """Manage API keys (admin keys only)."""


@keys.command(epilog="""\b
Examples:
  chaser keys create --name ci                 # prints the new secret key
  export CHASER_API_KEY=$(chaser keys create --name me)
  chaser keys create --name ops --admin --json
  chaser keys create --name ci --max-sandboxes 8 --max-memory-mb 16384""")
@click.option("--name", default="", help="A label for the key.")
@click.option("--admin", is_flag=True, help="An admin key (may manage keys).")
@click.option("--tenant", metavar="ID", help="Share this existing tenant instead of a new one.")
@limit_options
@json_option
@pass_app
def create(app: AppContext, /, name: str, admin: bool, tenant: str | None, as_json: bool,
           **limits: int | None) -> None:
    """Create a key and print its secret (shown only once)."""
    key = app.client().keys.create(name, admin=admin, tenant=tenant, limits=_limits(limits))
    if as_json:
        print_json(key)
        return
    click.echo(key.key)
    if sys.stderr.isatty():
        click.echo(f"created {key.id}; store the key now, it is not shown again", err=True)


@keys.command("list", epilog="""\b
Example:
  chaser keys list --json | jq -r '.[] | select(.revoked_at == null) | .id'""")
@json_option
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List keys (without their secrets)."""
    items = app.client().keys.list()
    if as_json:
        print_json(items)
        return
    print_table(["id", "name", "admin", "tenant", "created", "revoked"],
                [[k.id, k.name or None, k.admin, k.tenant, k.created_at, k.revoked_at]
                 for k in items])


@keys.command("limits", epilog="""\b
Examples:
  chaser keys limits key_123 --max-sandboxes 4 --max-sessions 2
  chaser keys limits key_123                     # back to the server's defaults""")
@click.argument("key_id", metavar="KEY_ID")
@limit_options
@json_option
@pass_app
def limits_(app: AppContext, /, key_id: str, as_json: bool, **limits: int | None) -> None:
    """Set the limits of a key's tenant (options left out: the server's defaults)."""
    key = app.client().keys.set_limits(key_id, _limits(limits) or TenantLimits())
    if as_json:
        print_json(key)
        return
    assert key.limits is not None
    print_fields([(k, v) for k, v in key.limits.model_dump().items()])


@keys.command(epilog="""\b
Example:
  chaser keys revoke key_123""")
@click.argument("key_id", metavar="KEY_ID")
@json_option
@pass_app
def revoke(app: AppContext, key_id: str, as_json: bool) -> None:
    """Revoke a key: requests with it fail from now on."""
    key = app.client().keys.revoke(key_id)
    if as_json:
        print_json(key)
    else:
        click.echo(f"{key.id} revoked")
