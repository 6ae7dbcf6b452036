"""What ``oddjob doctor`` found: one line per check with its time, then a verdict."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Check:
    """One check: ``passed``, ``failed`` or ``skipped``, how long it took, and why."""

    section: str
    name: str
    outcome: str
    seconds: float
    detail: str = ""


@dataclass
class Report:
    backend: str
    namespace: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.outcome != "failed" for c in self.checks)

    def lines(self, verbose: bool = False) -> list[str]:
        """The report as text: failures in full, passes counted (listed with ``verbose``)."""
        out = [f"oddjob doctor: storage '{self.backend}' in {self.namespace or '?'}"]
        for key, value in self.settings.items():
            out.append(f"  {key}: {value}")
        for section in dict.fromkeys(c.section for c in self.checks):
            checks = [c for c in self.checks if c.section == section]
            count = {
                o: sum(c.outcome == o for c in checks) for o in ("passed", "failed", "skipped")
            }
            took = sum(c.seconds for c in checks)
            out.append(
                f"{section}: {count['passed']} passed, {count['failed']} failed, "
                f"{count['skipped']} skipped in {took:.1f} s"
            )
            for c in checks:
                if c.outcome == "failed" or verbose or (c.outcome == "skipped" and c.detail):
                    mark = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[c.outcome]
                    line = f"  {mark} {c.name} ({c.seconds:.2f} s)"
                    if c.detail and c.outcome != "passed":
                        line += ": " + c.detail.strip().splitlines()[-1][:300]
                    out.append(line)
        out += [f"problem: {p}" for p in self.problems]
        passed = sum(c.outcome == "passed" for c in self.checks)
        failed = sum(c.outcome == "failed" for c in self.checks)
        verdict = "PASS" if self.ok else "FAIL"
        out.append(f"{verdict}: {passed} passed, {failed} failed ({self.backend})")
        return out
