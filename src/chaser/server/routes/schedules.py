"""Schedules: create, list, get, delete, pause, resume (thin over `core.schedules`)."""

from __future__ import annotations

from fastapi import APIRouter

from chaser.jobs.models import Schedule, ScheduleCreate, ScheduleList
from chaser.server.deps import Caller, Core

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


@router.post("", response_model=Schedule, status_code=201)
async def create_schedule(req: ScheduleCreate, core: Core, caller: Caller) -> Schedule:
    """A job template run on a cron expression (in a time zone) or an interval."""
    return await core.schedules.create(caller.tenant, req)


@router.get("", response_model=ScheduleList)
async def list_schedules(core: Core, caller: Caller) -> ScheduleList:
    return await core.schedules.list(caller.tenant)


@router.get("/{schedule_id}", response_model=Schedule)
async def get_schedule(schedule_id: str, core: Core, caller: Caller) -> Schedule:
    """The schedule with its next run times."""
    return await core.schedules.get(caller.tenant, schedule_id)


@router.delete("/{schedule_id}", response_model=Schedule)
async def delete_schedule(schedule_id: str, core: Core, caller: Caller) -> Schedule:
    """Delete the schedule (jobs it queued are left alone)."""
    return await core.schedules.delete(caller.tenant, schedule_id)


@router.post("/{schedule_id}/pause", response_model=Schedule)
async def pause_schedule(schedule_id: str, core: Core, caller: Caller) -> Schedule:
    return await core.schedules.set_paused(caller.tenant, schedule_id, True)


@router.post("/{schedule_id}/resume", response_model=Schedule)
async def resume_schedule(schedule_id: str, core: Core, caller: Caller) -> Schedule:
    """Resume; runs missed while paused are not made up."""
    return await core.schedules.set_paused(caller.tenant, schedule_id, False)
