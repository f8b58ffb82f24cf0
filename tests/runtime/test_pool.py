"""The warm pool on a real runtime: what it warms, when, and at what CPU weight."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from chaser.runtime.base import ExitStatus, ProcessIO, ProcessSpec, SandboxSpec
from chaser.runtime.bwrap import BwrapRuntime
from chaser.runtime.cgroups import ResourceLimits
from chaser.runtime.uids import allocate

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture
async def runtime(tmp_root: Path) -> AsyncIterator[BwrapRuntime]:
    data_dir = Path(tempfile.mkdtemp(dir=tmp_root))
    data_dir.chmod(0o711)
    uids = await asyncio.to_thread(allocate, data_dir)
    rt = await asyncio.to_thread(BwrapRuntime, data_dir / "runtime", uids, 2)
    if rt.cgroups.version == "none":
        pytest.skip("no usable cgroup controllers on this host")
    yield rt
    await rt.close()


def spec(pids: int = 64) -> SandboxSpec:
    return SandboxSpec(name="eph_" + secrets.token_hex(6),
                       limits=ResourceLimits(memory_bytes=256 << 20, pids=pids))


async def run(rt: BwrapRuntime, s: SandboxSpec, command: str) -> ExitStatus:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = await rt.run_once(s, ProcessSpec(["/bin/sh", "-c", command], ENV, "/"),
                                 ProcessIO(out_w, err_w, None))
        return await proc.wait()
    finally:
        os.close(out_r)
        os.close(err_r)


def cpu_weight(cgroup_dirs: list[Path]) -> int:
    for d in cgroup_dirs:
        for name in ("cpu.shares", "cpu.weight"):
            if (d / name).exists():
                return int((d / name).read_text())
    raise AssertionError(f"no cpu controller among {cgroup_dirs}")


async def warmed(rt: BwrapRuntime, n: int) -> None:
    for _ in range(200):
        if len(rt.pool._ready) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the pool did not warm {n} sandboxes: {rt.pool.stats}")


async def test_warm_sandboxes_yield_the_cpu_until_a_run_takes_one(runtime: BwrapRuntime) -> None:
    await run(runtime, spec(), "true")
    await run(runtime, spec(), "true")  # the same shape twice: worth warming
    await warmed(runtime, 1)
    for _, sandbox in runtime.pool._ready:
        assert sandbox.cgroup is not None
        assert cpu_weight(sandbox.cgroup.dirs) in (2, 1)  # lowest: v1 cpu.shares, v2 weight
    taken = runtime.pool._ready[0][1]  # the next run's
    assert taken.cgroup is not None
    dirs = list(taken.cgroup.dirs)
    hits = runtime.pool.stats["hit"]
    running = asyncio.ensure_future(run(runtime, spec(), "sleep 1"))
    for _ in range(100):
        if runtime.pool.stats["hit"] > hits:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert cpu_weight(dirs) in (1024, 100)  # the default again while the run goes on
    assert (await running).code == 0


async def test_runs_whose_shape_keeps_changing_warm_nothing(runtime: BwrapRuntime) -> None:
    for pids in range(40, 48):  # limits asked anew each time: a warm one would be wasted
        assert (await run(runtime, spec(pids), "true")).code == 0
    await asyncio.sleep(0.3)
    assert runtime.pool.stats["warmed"] == 0 and runtime.pool.stats["hit"] == 0


async def test_tenants_whose_runs_interleave_each_keep_warm_sandboxes(
        runtime: BwrapRuntime) -> None:
    def of(group: str) -> SandboxSpec:
        return replace(spec(), group=group, group_limits=ResourceLimits(pids=500))

    for _ in range(2):  # each tenant's shape asked twice, the tenants taking turns
        for group in ("t_a", "t_b"):
            await run(runtime, of(group), "true")
    await warmed(runtime, 2)
    assert {s.group for s, _ in runtime.pool._ready} == {"t_a", "t_b"}
    hits = runtime.pool.stats["hit"]
    for _ in range(3):
        for group in ("t_a", "t_b"):
            await run(runtime, of(group), "true")
            await asyncio.sleep(0.3)  # the replacement starts once the run is over
    assert runtime.pool.stats["hit"] == hits + 6, runtime.pool.stats
