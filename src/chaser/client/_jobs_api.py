"""Every jobs and schedules call the SDK makes, described once as data (see `_api.py`)."""

from __future__ import annotations

from typing import Any

from chaser.jobs.models import (
    Job,
    JobCreate,
    JobList,
    JobLogs,
    PipelineStep,
    Schedule,
    ScheduleCreate,
    ScheduleList,
)

from ._api import Call, _body, _seg



def job_request(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A job request as JSON, checked here with the server's own model (an unknown
    field fails before anything is sent). `max_attempts` is a shorthand for
    `retry={"max_attempts": N}`."""
    fields = {k: v for k, v in fields.items() if v is not None}
    if "max_attempts" in fields:
        fields["retry"] = {**dict(fields.get("retry") or {}),
                           "max_attempts": fields.pop("max_attempts")}
    if "steps" in fields:
        fields["steps"] = [s.model_dump(exclude_none=True) if isinstance(s, PipelineStep) else s
                           for s in fields["steps"]]
    return JobCreate.model_validate({"kind": kind, **fields}).model_dump(
        mode="json", exclude_none=True, exclude_defaults=True) | {"kind": kind}


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{_seg(job_id)}"


def job_create(body: dict[str, Any]) -> Call[Job]:
    return Call("POST", "/v1/jobs", Job.model_validate, json=body, read_timeout=60.0)


def job_get(job_id: str) -> Call[Job]:
    return Call("GET", job_path(job_id), Job.model_validate)


def job_list(*, status: str | None, kind: str | None, queue: str | None,
             workspace: str | None, labels: dict[str, str] | None, schedule_id: str | None,
             cursor: str | None, limit: int | None) -> Call[JobList]:
    params: dict[str, Any] = _body(status=status, kind=kind, queue=queue, workspace=workspace,
                                   schedule_id=schedule_id, cursor=cursor, limit=limit)
    if labels:
        params["label"] = [f"{k}={v}" for k, v in labels.items()]
    return Call("GET", "/v1/jobs", JobList.model_validate, params=params)


def job_cancel(job_id: str) -> Call[Job]:
    return Call("POST", f"{job_path(job_id)}/cancel", Job.model_validate, read_timeout=30.0)


def job_retry(job_id: str, resume_from_failed_step: bool | None) -> Call[Job]:
    return Call("POST", f"{job_path(job_id)}/retry", Job.model_validate,
                json=_body(resume_from_failed_step=resume_from_failed_step))


def job_logs(job_id: str, attempt: int | None) -> Call[JobLogs]:
    return Call("GET", f"{job_path(job_id)}/logs", JobLogs.model_validate,
                params=_body(attempt=attempt))


def schedule_path(schedule_id: str) -> str:
    return f"/v1/schedules/{_seg(schedule_id)}"


def schedule_create(body: dict[str, Any]) -> Call[Schedule]:
    req = ScheduleCreate.model_validate(body)
    return Call("POST", "/v1/schedules", Schedule.model_validate,
                json=req.model_dump(mode="json", exclude_none=True))


def schedule_list() -> Call[ScheduleList]:
    return Call("GET", "/v1/schedules", ScheduleList.model_validate)


def schedule_get(schedule_id: str) -> Call[Schedule]:
    return Call("GET", schedule_path(schedule_id), Schedule.model_validate)


def schedule_delete(schedule_id: str) -> Call[Schedule]:
    return Call("DELETE", schedule_path(schedule_id), Schedule.model_validate)


def schedule_pause(schedule_id: str, paused: bool) -> Call[Schedule]:
    action = "pause" if paused else "resume"
    return Call("POST", f"{schedule_path(schedule_id)}/{action}", Schedule.model_validate)
