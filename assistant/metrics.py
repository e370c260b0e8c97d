"""Prometheus metrics, observed from outside the data path (read after each engine step)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from .engine import StepReport

STAGES = ("input", "vision", "encode", "lm", "decode", "model")  # model: encode + lm + decode replayed as a graph
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions = Gauge("tutti_sessions", "live sessions", registry=self.registry)
        self.step = Histogram("tutti_step_seconds", "one batched engine step", buckets=BUCKETS, registry=self.registry)
        self.stage = Histogram("tutti_stage_seconds", "per-stage time of a step", ["stage"], buckets=BUCKETS,
                               registry=self.registry)
        self.late = Counter("tutti_late_frames_total", "frames stepped with silence (input late)", registry=self.registry)
        self.dropped = Counter("tutti_dropped_frames_total", "output frames dropped (not read in time)",
                               registry=self.registry)
        self.skipped = Counter("tutti_skipped_input_frames_total",
                               "quiet input frames skipped to shed a lasting input backlog", registry=self.registry)
        self.rejected = Counter("tutti_rejected_total", "requests answered with an error", ["reason"],
                                registry=self.registry)
        self.closed = Counter("tutti_sessions_closed_total", "sessions ended, by what ended them", ["cause"],
                              registry=self.registry)

    def reject(self, code: str) -> None:
        """Count a refusal (a request, a message or media refused) by its code."""
        self.rejected.labels(code).inc()

    def observe_step(self, report: StepReport) -> None:
        self.step.observe(report.seconds)
        for name in STAGES:
            self.stage.labels(name).observe(report.stages.get(name, 0.0))
        self.sessions.set(report.sessions)
        self.late.inc(report.late)
        self.dropped.inc(report.dropped)
        self.skipped.inc(report.skipped)

    def render(self) -> bytes:
        return generate_latest(self.registry)
