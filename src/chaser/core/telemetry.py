"""Metrics in Prometheus' text format, from one registry per server (no global state).

Counters and histograms are observed where things happen; gauges (sandboxes, sessions,
commands, what the ledger holds, free disk) are read when scraped, so they can never
drift from the truth; kept log bytes come from the log janitor's last measurement.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chaser.runtime.usage import ResourceUsage

LATENCY_BUCKETS = (0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.5, 1, 2, 5,
                   10, 30, 60, 300)


class Telemetry:
    """The server's metrics; `render()` is what `GET /metrics` returns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.exec_seconds = Histogram(
            "chaser_exec_seconds", "Foreground exec latency, request to result.", ["kind"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.sandbox_start_seconds = Histogram(
            "chaser_sandbox_start_seconds", "Time to start a session's sandbox.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.job_attempts = Counter(
            "chaser_job_attempts", "Job attempts ended on this server, by outcome.",
            ["outcome"], registry=self.registry)

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class GaugeCollector(Collector):
    """One labelled gauge read at scrape time from a callable (label value -> number)."""

    def __init__(self, name: str, documentation: str, label: str,
                 read: Callable[[], dict[str, int]]) -> None:
        self.name, self.documentation, self.label, self.read = name, documentation, label, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, n in sorted(self.read().items()):
            gauge.add_metric([value], n)
        yield gauge


class LiveCollector(Collector):
    """Gauges read at scrape time from the core's live state (given as callables)."""

    def __init__(self, sandboxes: Callable[[], dict[str, int]], held: Callable[[], dict[str, int]],
                 refused: Callable[[], dict[str, int]], pool: Callable[[], dict[str, int]],
                 data_dir: Path, log_bytes: Callable[[], int],
                 starts: Callable[[], tuple[int, int]],
                 transfers: Callable[[], tuple[int, int]] = lambda: (0, 0),
                 measured: Callable[[], ResourceUsage | None] = lambda: None) -> None:
        self.sandboxes = sandboxes
        self.pool = pool
        self.held = held
        self.refused = refused
        self.data_dir = data_dir
        self.log_bytes = log_bytes
        self.starts = starts
        self.transfers = transfers
        self.measured = measured  # every sandbox together: one cgroup's counters

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        kinds = GaugeMetricFamily("chaser_sandboxes", "Running sandboxes by kind.",
                                  labels=["kind"])
        for kind, n in self.sandboxes().items():
            kinds.add_metric([kind], n)
        yield kinds
        held = self.held()
        yield GaugeMetricFamily("chaser_sessions", "Running sessions.", value=held["sessions"])
        yield GaugeMetricFamily("chaser_running_commands", "Running commands.",
                                value=held["commands"])
        yield GaugeMetricFamily("chaser_memory_limits_mb",
                                "Sum of memory limits of running sandboxes (MiB).",
                                value=held["memory_mb"])
        refused = CounterMetricFamily("chaser_refused", "Requests refused (429/503) by limit.",
                                      labels=["limit"])
        for limit, n in self.refused().items():
            refused.add_metric([limit], n)
        yield refused
        pool = CounterMetricFamily("chaser_warm_pool", "One-shot runs by warm pool outcome.",
                                   labels=["outcome"])
        stats = self.pool()
        for outcome in ("hit", "miss"):
            if outcome in stats:
                pool.add_metric([outcome], stats[outcome])
        yield pool
        free, waiting = self.starts()
        yield GaugeMetricFamily("chaser_start_slots_free",
                                "Sandbox starts that could begin now (CHASER_CONCURRENT_STARTS "
                                "less those under way).", value=free)
        yield GaugeMetricFamily("chaser_starts_waiting",
                                "Sandbox starts waiting for a slot (served in turn by tenant).",
                                value=waiting)
        file_ops, stdin_streams = self.transfers()
        yield GaugeMetricFamily("chaser_file_operations",
                                "File operations (downloads, uploads, ...) running.",
                                value=file_ops)
        yield GaugeMetricFamily("chaser_stdin_streams",
                                "Raw request bodies being fed to commands' stdin.",
                                value=stdin_streams)
        yield from self._measured()
        usage = shutil.disk_usage(self.data_dir)
        yield GaugeMetricFamily("chaser_data_disk_free_bytes",
                                "Free bytes on the data dir's filesystem.", value=usage.free)
        yield GaugeMetricFamily("chaser_output_log_bytes",
                                "Bytes of sessions' command output kept (at the log "
                                "janitor's last pass).", value=self.log_bytes())

    def _measured(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """What all sandboxes use together, as the kernel counts it. Server-wide only: a
        series per session or tenant would grow without bound (sessions come and go by
        the thousand); GET /v1/sessions/{id} and GET /v1/usage have those figures."""
        u = self.measured()
        if u is None:
            return
        if u.memory_bytes is not None:
            yield GaugeMetricFamily("chaser_sandbox_memory_bytes",
                                    "Memory all sandboxes use now (working set).",
                                    value=u.memory_bytes)
        if u.pids is not None:
            yield GaugeMetricFamily("chaser_sandbox_pids",
                                    "Processes in all sandboxes now.", value=u.pids)
        if u.cpu_usec is not None:
            yield CounterMetricFamily("chaser_sandbox_cpu_seconds",
                                      "CPU time all sandboxes used since the server started.",
                                      value=u.cpu_usec / 1e6)
