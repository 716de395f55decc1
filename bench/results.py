"""Results: what one scenario measured, statistics over repetitions, and ratios within them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields
from typing import Any

from bench.measure import Run
from bench.verify import Verdict

OK = "ok"
NOT_YET = "not yet available"
SKIPPED = "skipped"


@dataclass
class Measurement:
    tool: str
    rep: int
    run: Run
    verdict: Verdict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.run.rc == 0 and (self.verdict is None or self.verdict.ok)

    @staticmethod
    def from_json(d: dict[str, Any]) -> Measurement:
        run_keys = {f.name for f in fields(Run)}
        run = Run(**{k: v for k, v in d.items() if k in run_keys})
        v = d.get("verify")
        verdict = None
        if v is not None:
            verdict = Verdict(list(v["problems"]), list(v["notes"]), v["messages"], v["folders"])
        known = run_keys | {"tool", "rep", "ok", "cpu", "maxrss_mb", "verify"}
        extra = {k: x for k, x in d.items() if k not in known}
        return Measurement(d["tool"], d["rep"], run, verdict, extra)

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "rep": self.rep,
            "ok": self.ok,
            **self.run.to_json(),
            "verify": self.verdict.to_json() if self.verdict else None,
            **self.extra,
        }


@dataclass
class Stat:
    median: float
    min: float
    max: float
    n: int

    @staticmethod
    def of(values: list[float]) -> Stat | None:
        values = [v for v in values if v == v]  # NaN: not measured
        if not values:
            return None
        return Stat(statistics.median(values), min(values), max(values), len(values))

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


@dataclass
class Scenario:
    key: str
    title: str
    status: str = OK
    reason: str = ""
    tools: list[str] = field(default_factory=list)
    """The tools in table order; the first is the one the ratios are of (syncd)."""
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tool_status: dict[str, str] = field(default_factory=dict)
    """Per tool, why it has no numbers (not installed, not yet available, ...)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, m: Measurement) -> Measurement:
        self.measurements.append(m)
        return m

    def of(self, tool: str) -> list[Measurement]:
        return [m for m in self.measurements if m.tool == tool]

    def stat(self, tool: str, attr: str) -> Stat | None:
        return Stat.of([_value(m, attr) for m in self.of(tool)])

    def ratios(self, base: str, other: str, attr: str = "wall") -> list[float]:
        """base/other per repetition, for the repetitions that ran both."""
        a = {m.rep: _value(m, attr) for m in self.of(base)}
        b = {m.rep: _value(m, attr) for m in self.of(other)}
        return [a[r] / b[r] for r in sorted(a.keys() & b.keys()) if b[r] > 0]

    def ratio(self, base: str, other: str, attr: str = "wall") -> Stat | None:
        return Stat.of(self.ratios(base, other, attr))

    def verified(self, tool: str) -> tuple[int, int]:
        ms = self.of(tool)
        return sum(m.ok for m in ms), len(ms)

    def to_json(self) -> dict[str, Any]:
        tools: dict[str, Any] = {}
        for t in self.tools:
            ms = self.of(t)
            entry: dict[str, Any] = {"status": self.tool_status.get(t, OK if ms else SKIPPED)}
            for attr in ("wall", "cpu", "maxrss_mb", "server_cpu"):
                s = self.stat(t, attr)
                if s is not None:
                    entry[attr] = s.to_json()
            good, total = self.verified(t)
            entry["verified"] = f"{good}/{total}"
            if t != self.tools[0]:
                for attr in ("wall", "cpu"):
                    r = self.ratio(self.tools[0], t, attr)
                    if r is not None:
                        entry[f"ratio_{attr}"] = {
                            **r.to_json(),
                            "per_rep": self.ratios(self.tools[0], t, attr),
                        }
            entry["runs"] = [m.to_json() for m in ms]
            tools[t] = entry
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "notes": self.notes,
            "tools": tools,
            **self.extra,
        }


_SCENARIO_KEYS = {"key", "title", "status", "reason", "notes", "tools"}


def scenario_from_json(d: dict[str, Any]) -> Scenario:
    """The inverse of ``Scenario.to_json`` (for merging an earlier run's results)."""
    sc = Scenario(d["key"], d["title"], d["status"], d["reason"], list(d["tools"]))
    sc.notes = list(d["notes"])
    for t, entry in d["tools"].items():
        if entry.get("status") not in (OK, SKIPPED):
            sc.tool_status[t] = entry["status"]
        sc.measurements += [Measurement.from_json(r) for r in entry.get("runs", [])]
    sc.extra = {k: v for k, v in d.items() if k not in _SCENARIO_KEYS}
    return sc


def _value(m: Measurement, attr: str) -> float:
    if attr in m.extra:
        return float(m.extra[attr])
    v = getattr(m.run, attr)
    return float(v) if v is not None else float("nan")
