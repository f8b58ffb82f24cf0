"""`chaser keys ...`: manage API keys (needs an admin key)."""

from __future__ import annotations

import sys

import click

from ._app import AppContext, pass_app, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


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
  chaser keys create --name ops --admin --json""")
@click.option("--name", default="", help="A label for the key.")
@click.option("--admin", is_flag=True, help="An admin key (may manage keys).")
@click.option("--tenant", metavar="ID", help="Share this existing tenant instead of a new one.")
@json_option
@pass_app
def create(app: AppContext, name: str, admin: bool, tenant: str | None, as_json: bool) -> None:
    """Create a key and print its secret (shown only once)."""
    key = app.client().keys.create(name, admin=admin, tenant=tenant)
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
