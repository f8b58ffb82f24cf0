"""`chaser images pull|ls|inspect|rm|prune|import`, with `--json`, run as a subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.test_cli_objects import cli_as, ok
from tests.conftest import Registry, ServerProcess
from tests.images import oci
from tests.types import Tenant


def test_images_round_trip(server: ServerProcess, registry: Registry, tenant: Tenant,
                           tmp_root: Path) -> None:
    admin, user = cli_as(server.url, server.admin_key or ""), cli_as(server.url, tenant.key)
    layout = oci.write_layout(tmp_root / "oci-cli", [oci.busybox_layer(), [oci.file("c", "1")]])
    ref = oci.push(layout, registry.host, "test/cli:1")
    pulled = json.loads(ok(user("images", "pull", ref, "--json")))
    assert pulled["reference"] == ref and pulled["layers"] == 2
    human = ok(user("images", "pull", ref))
    assert human.startswith(f"{ref}: {pulled['digest']}")
    listing = json.loads(ok(user("images", "ls", "--json")))
    assert ref in [i["reference"] for i in listing["images"]] and listing["cache_bytes"] > 0
    table = ok(user("images", "ls"))
    assert table.splitlines()[0].split()[:2] == ["REFERENCE", "DIGEST"] and ref in table
    assert json.loads(ok(user("images", "inspect", ref, "--json")))["digest"] == pulled["digest"]
    denied = user("images", "rm", ref)
    assert denied.returncode != 0 and "admin" in denied.stderr
    removed = json.loads(ok(admin("images", "rm", ref, "--json")))
    assert removed[0]["digest"] == pulled["digest"]
    gone = user("images", "inspect", ref)
    assert gone.returncode != 0 and "not in this server's cache" in gone.stderr
    # import (admins), then prune it
    archive = tmp_root / "cli-saved.tar"
    subprocess.run(["skopeo", "copy", "--quiet", "--insecure-policy", f"oci:{layout.path}:latest",
                    f"docker-archive:{archive}:cli/imported:2"], check=True, capture_output=True)
    imported = json.loads(ok(admin("images", "import", str(archive), "--json")))
    assert imported["reference"] == "docker.io/cli/imported:2"
    refused = user("images", "import", str(archive))
    assert refused.returncode != 0 and "admin" in refused.stderr
    # an OCI layout directory, as it is on disk
    from_dir = json.loads(ok(admin("images", "import", str(layout.path), "--name",
                                   "cli/layout:3", "--json")))
    assert from_dir["digest"] == layout.manifest_digest
    assert from_dir["references"] == ["docker.io/cli/layout:3"]
    pruned = json.loads(ok(admin("images", "prune", "--older-than", "0s", "--json")))
    assert {"docker.io/cli/imported:2", "docker.io/cli/layout:3"} <= {
        d["reference"] for d in pruned["deleted"]}
    bad = admin("images", "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "expected a number" in bad.stderr
