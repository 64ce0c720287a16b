"""`make audit`: known vulnerabilities in the locked dependencies (requirements.lock).

Runs pip-audit on the lock file as it is (`--disable-pip`: every requirement is pinned with
its hashes, so nothing is resolved or installed) and reads its JSON report:

- any known vulnerability fails, always (exit 1), with the advisories listed;
- where pip-audit's vulnerability service cannot be reached, or answers for no package at
  all (this workplace reaches PyPI's package index but not its per-release JSON API, so
  every package comes back "not found on PyPI"), it says so plainly, names how many packages
  went unaudited, and passes: an unreachable service is not a finding. Anything else that
  goes wrong (some packages audited and others skipped, a crash) fails.

Set MECC_AUDIT_REQUIRE_SERVICE=1 to make an unreachable service a failure too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PIP_AUDIT = str(Path(sys.executable).with_name("pip-audit"))
UNREACHABLE = ("ConnectionError", "NameResolutionError", "Max retries exceeded",
               "Temporary failure in name resolution", "timed out", "ServiceError")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "audit.json"
        done = subprocess.run(  # noqa: S603 - our own venv's pip-audit on our own lock file
            [PIP_AUDIT, "--requirement", str(LOCK), "--disable-pip", "--format", "json",
             "--output", str(report_path), "--progress-spinner", "off"],
            capture_output=True, text=True, check=False, timeout=900)
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    code, lines = verdict(report, done.stdout + done.stderr,
                          require_service=os.environ.get("MECC_AUDIT_REQUIRE_SERVICE") == "1")
    print("\n".join(lines))
    return code


def verdict(report: dict[str, Any] | None, output: str, *,
            require_service: bool = False) -> tuple[int, list[str]]:
    """The exit code and what to say, from pip-audit's JSON report (None: it wrote none)."""
    if report is None:
        if any(marker in output for marker in UNREACHABLE):
            last = output.strip().splitlines()[-1] if output.strip() else "no answer"
            return _unreachable(f"pip-audit could not reach its vulnerability service ({last})",
                                None, require_service)
        return 1, [output, "audit: FAILED: pip-audit wrote no report"]
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    lines = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed release yet"
            lines.append(f"audit: {dep['name']} {dep['version']}: {vuln['id']} "
                         f"(fixed in {fixed}) {vuln.get('description', '')[:200]}")
    if vulnerable:
        lines.append(f"audit: FAILED: {len(vulnerable)} locked packages have known "
                     "vulnerabilities; upgrade them in pyproject.toml and run `make lock`.")
        return 1, lines
    if dependencies and audited == 0:
        reason = sorted({str(d["skip_reason"]) for d in skipped})[0]
        return _unreachable(f"the vulnerability service answered for no package ({reason})",
                            len(dependencies), require_service)
    if skipped:
        lines += [f"audit: {d['name']} {d['version']} not audited: {d['skip_reason']}"
                  for d in skipped]
        lines.append(f"audit: FAILED: {len(skipped)} of {len(dependencies)} packages were "
                     "not audited")
        return 1, lines
    return 0, [f"audit: {audited} locked packages, no known vulnerabilities"]


def _unreachable(why: str, count: int | None, require_service: bool) -> tuple[int, list[str]]:
    unaudited = f"{count} locked packages were NOT audited" if count else "nothing was audited"
    return (1 if require_service else 0), [
        f"audit: NOT CHECKED: {why}; {unaudited}. Run `make audit` where pip-audit's service "
        "(PyPI's JSON API or OSV) can be reached."]


if __name__ == "__main__":
    sys.exit(main())
