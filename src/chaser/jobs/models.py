"""Wire shapes of jobs and schedules, shared by the server, the core and the SDK.

Every field is described in docs/jobs.md; the defaults here are the documented ones.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chaser.models import (
    COMMAND_PATTERN,
    MAX_TIMEOUT_MS,
    NO_NUL,
    AbsPath,
    CommandRequest,
    EnvVars,
    ImageName,
    Limits,
    Shell,
    Strict,
    Text,
    WorkspaceName,
    exclusive_target,
)

JobKind = Literal["sandbox.exec", "pipeline.run"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
AttemptStatus = Literal["running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
RetryOn = Literal["exit_nonzero", "timeout", "infrastructure"]
Overlap = Literal["skip", "queue"]
ALL_RETRY_ON: tuple[RetryOn, ...] = ("exit_nonzero", "timeout", "infrastructure")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
MAX_STEPS = 100
MAX_LABELS = 32
MAX_ATTEMPTS = 100
MAX_DEADLINE_MS = 7 * 24 * 3600 * 1000
QUEUE_RE = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$"
LABEL_KEY_RE = r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,62}$"
# RFC 3339 with a zone: what `run_at` takes (the schema says it; the service checks it).
RUN_AT_PATTERN = (r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3])"
                  r":[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
# Five fields, as crontab, GitHub Actions and Kubernetes take them (cronsim would also
# take a sixth, seconds, which would fire a schedule every second: refused).
CRON_PATTERN = r"^\s*[0-9A-Za-z*?,/#-]+(\s+[0-9A-Za-z*?,/#-]+){4}\s*$"
# An http(s) URL with a host, no credentials and a port in range (check_webhook); whether
# the host is allowed is the server's setting (403 webhook_not_allowed).
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|0[0-9]{4}|[0-9]{0,4})"
WEBHOOK_PATTERN = (rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~!$&'()*+,;=%-]+(?::{_PORT})?"
                   r"(?:[/?#][^\s]*)?$")
# IANA names this host's zone data knows, less the host-dependent aliases ("localtime"
# is whatever the server's machine is set to; "Factory" and "posixrules" are not zones).
TIMEZONES = frozenset(available_timezones()) - {"localtime", "Factory", "posixrules"}
_TZ_SCHEMA: dict[str, Any] = {"enum": sorted(TIMEZONES)} if TIMEZONES else {}
_COMMAND_SCHEMA: dict[str, Any] = {"pattern": COMMAND_PATTERN}
# A job is a command or steps, never both (see _shape below), for the OpenAPI schema.
_JOB_SHAPE: dict[str, Any] = {"allOf": [
    exclusive_target(),
    {"anyOf": [
        {"required": ["command"], "properties": {
            "kind": {"const": "sandbox.exec"}, "command": {"type": "string"},
            "steps": {"type": "null"}}},
        {"required": ["kind", "steps"], "properties": {
            "kind": {"const": "pipeline.run"}, "steps": {"type": "array"},
            "command": {"type": "null"}}}]}]}


class _Strict(Strict):
    """As every request: unknown fields refused, JSON types taken as they are."""


def _command(v: str) -> str:
    return CommandRequest.model_validate({"command": v}).command  # one set of rules


class RetryPolicy(_Strict):
    """When and how soon a failed attempt is tried again."""

    max_attempts: int = Field(default=1, ge=1, le=MAX_ATTEMPTS)
    initial_backoff_ms: int = Field(default=1000, ge=0, le=MAX_TIMEOUT_MS)
    backoff_multiplier: float = Field(default=2.0, ge=1.0, le=100.0)
    max_backoff_ms: int = Field(default=300_000, ge=0, le=MAX_TIMEOUT_MS)
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    retry_on: list[RetryOn] = Field(default_factory=lambda: list(ALL_RETRY_ON), max_length=3)
    never_retry_exit_codes: list[int] = Field(default_factory=list, max_length=256)


class StepRetry(_Strict):
    """A pipeline step tried again in the same attempt (the sandbox is kept)."""

    max_attempts: int = Field(default=1, ge=1, le=MAX_ATTEMPTS)
    backoff_ms: int = Field(default=0, ge=0, le=3_600_000)


class PipelineStep(_Strict):
    """One step of a `pipeline.run` job."""

    name: Text = Field(default="", max_length=100)
    command: Text = Field(min_length=1, json_schema_extra=_COMMAND_SCHEMA)
    env: EnvVars | None = None
    cwd: AbsPath | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)
    continue_on_error: bool = False
    retry: StepRetry | None = None

    @field_validator("command")
    @classmethod
    def _cmd(cls, v: str) -> str:
        return _command(v)


class JobCreate(_Strict):
    """`POST /v1/jobs`: a `sandbox.exec` (command) or `pipeline.run` (steps) job."""

    model_config = ConfigDict(json_schema_extra=_JOB_SHAPE)

    kind: JobKind = "sandbox.exec"
    workspace: WorkspaceName | None = None
    ephemeral: bool | None = None
    image: ImageName | None = None
    limits: Limits | None = None
    command: Text | None = Field(default=None, json_schema_extra=_COMMAND_SCHEMA)
    steps: list[PipelineStep] | None = Field(default=None, min_length=1, max_length=MAX_STEPS)
    env: EnvVars | None = None
    cwd: AbsPath | None = None
    shell: Shell = "sh"
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)
    deadline_ms: int | None = Field(default=None, ge=1, le=MAX_DEADLINE_MS)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    resume_from_failed_step: bool = False
    queue: str = Field(default="default", pattern=QUEUE_RE)
    priority: int = Field(default=0, ge=-1000, le=1000)
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=200)
    run_at: str | None = Field(default=None, max_length=64, json_schema_extra={
        "pattern": RUN_AT_PATTERN, "format": "date-time"})
    labels: dict[str, Text] = Field(default_factory=dict, json_schema_extra={
        "maxProperties": MAX_LABELS, "propertyNames": {"pattern": LABEL_KEY_RE},
        "additionalProperties": {"type": "string", "maxLength": 200, "pattern": NO_NUL}})
    webhook: str | None = Field(default=None, max_length=2048, json_schema_extra={
        "pattern": WEBHOOK_PATTERN})

    @field_validator("command")
    @classmethod
    def _cmd(cls, v: str | None) -> str | None:
        return None if v is None else _command(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        for key, value in v.items():
            if not re.fullmatch(LABEL_KEY_RE, key) or len(value) > 200 or "\0" in value:
                raise ValueError(f"invalid label {key!r}: keys are 1-63 of A-Z a-z 0-9 . _ / -, "
                                 "values at most 200 characters, no NUL")
        return v

    @model_validator(mode="after")
    def _shape(self) -> JobCreate:
        if self.workspace is not None and self.ephemeral:
            raise ValueError("give either workspace or ephemeral, not both")
        if self.kind == "sandbox.exec" and (self.command is None or self.steps is not None):
            raise ValueError("a sandbox.exec job takes `command` (and no `steps`)")
        if self.kind == "pipeline.run" and (self.steps is None or self.command is not None):
            raise ValueError("a pipeline.run job takes `steps` (and no `command`)")
        return self


class StepRecord(BaseModel):
    """A pipeline step as it ran in one attempt."""

    index: int
    name: str
    status: StepStatus
    exit_code: int | None = None
    end_reason: str | None = None
    tries: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    session_id: str | None = None
    command_id: str | None = None
    reused_from_attempt: int | None = None  # a resumed attempt kept this step's success


class Attempt(BaseModel):
    """One try of a job: where it ran, how it ended, where its output is."""

    number: int
    status: AttemptStatus
    exit_code: int | None = None
    signal: str | None = None
    end_reason: str | None = None
    node: str | None = None
    started_at: str
    ended_at: str | None = None
    duration_ms: int | None = None
    session_id: str | None = None
    command_id: str | None = None  # sandbox.exec: its output; pipelines: in each step
    steps: list[StepRecord] | None = None


class Job(BaseModel):
    """A job and everything it did."""

    id: str
    kind: JobKind
    status: JobStatus
    queue: str
    priority: int
    workspace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    schedule_id: str | None = None
    created_at: str
    run_at: str | None = None
    next_attempt_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    deadline_at: str | None = None
    cancel_requested: bool = False
    attempts: list[Attempt] = Field(default_factory=list)
    steps: list[StepRecord] | None = None  # pipelines: the latest attempt's
    exit_code: int | None = None  # the final result: the last attempt's
    end_reason: str | None = None
    request: dict[str, Any] = Field(default_factory=dict)


class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = None


class JobRetry(_Strict):
    """`POST /v1/jobs/{id}/retry`: one more attempt of a finished job."""

    resume_from_failed_step: bool | None = None


class LogEntry(BaseModel):
    """The output of one command of an attempt (the attempt's, or one step's)."""

    step: int | None = None
    name: str | None = None
    session_id: str | None = None
    command_id: str | None = None
    output: str = ""
    output_truncated: bool = False
    output_size: int = 0


class JobLogs(BaseModel):
    """`GET /v1/jobs/{id}/logs?attempt=N`."""

    job_id: str
    attempt: int
    entries: list[LogEntry]


class ScheduleCreate(_Strict):
    """`POST /v1/schedules`: a cron expression in a time zone, or an interval."""

    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"anyOf": [
            {"required": ["cron"], "properties": {"cron": {"type": "string"},
                                                  "interval_s": {"type": "null"}}},
            {"required": ["interval_s"], "properties": {"interval_s": {"type": "integer"},
                                                        "cron": {"type": "null"}}}]},
        {"properties": {"job": {"properties": {"idempotency_key": {"type": "null"},
                                               "run_at": {"type": "null"}}}}}]})

    name: Text = Field(default="", max_length=100)
    # The fields' shape; which values each field takes is cronsim's to say (400 invalid_cron).
    cron: str | None = Field(default=None, max_length=200, json_schema_extra={
        "pattern": CRON_PATTERN})
    timezone: str = Field(default="UTC", max_length=64, json_schema_extra=_TZ_SCHEMA)
    interval_s: int | None = Field(default=None, ge=1, le=366 * 24 * 3600)
    overlap: Overlap = "skip"
    paused: bool = False
    job: JobCreate

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleCreate:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError("give either cron or interval_s")
        if self.job.idempotency_key is not None or self.job.run_at is not None:
            raise ValueError("a schedule's job template takes no idempotency_key or run_at")
        return self


class Schedule(BaseModel):
    """A schedule: its timing, its job template, and when it runs next."""

    id: str
    name: str
    cron: str | None = None
    timezone: str
    interval_s: int | None = None
    overlap: Overlap
    paused: bool
    job: dict[str, Any]
    created_at: str
    last_run_at: str | None = None
    last_job_id: str | None = None
    next_run_at: str | None = None
    next_run_times: list[str] = Field(default_factory=list)


class ScheduleList(BaseModel):
    schedules: list[Schedule]
