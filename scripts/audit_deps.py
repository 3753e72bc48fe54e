"""Dependency audit for the test command: pip-audit over the installed, pinned set.

Prints one of:
  * ``dependency audit: N packages checked, no known vulnerabilities`` (exit 0)
  * the vulnerable packages with their advisories and fixed versions (exit 1)
  * ``dependency audit: not checked (…)`` when the advisory source cannot be reached (exit 0: an
    offline machine is not a failing build; the line says plainly that nothing was checked)

It also says when an installed version differs from the ``==`` pin in pyproject.toml (the audit is
of what is installed; a drift means the pins and the audit disagree). Options: ``SHEQUN_AUDIT_SERVICE``
(``pypi`` default, or ``osv``), ``SHEQUN_AUDIT_TIMEOUT`` seconds (default 180).
The upgrade routine is in docs/security.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [d for ds in project.get("optional-dependencies", {}).values() for d in ds]
    out = {}
    for spec in specs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", spec.strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def drift() -> list[str]:
    lines = []
    for name, pinned in sorted(pins().items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            lines.append(f"  {name}: pinned {pinned}, not installed")
            continue
        if installed != pinned:
            lines.append(f"  {name}: pinned {pinned}, installed {installed}")
    return lines


def main() -> int:
    for line in drift():
        print("dependency audit: pin drift" + line)
    service = os.environ.get("SHEQUN_AUDIT_SERVICE", "pypi")
    timeout = int(os.environ.get("SHEQUN_AUDIT_TIMEOUT", "180"))
    cmd = [sys.executable, "-m", "pip_audit", "--local", "--skip-editable", "--format", "json",
           "--progress-spinner", "off", "--vulnerability-service", service]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603  (our own argv)
    except subprocess.TimeoutExpired:
        print(f"dependency audit: not checked (no answer from the {service} advisory source in {timeout} s)")
        return 0
    except OSError as exc:
        print(f"dependency audit: not checked (pip-audit could not run: {exc})")
        return 0
    try:
        report = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"dependency audit: not checked (the {service} advisory source is unreachable: {last[:200]})")
        return 0
    deps = report.get("dependencies", [])
    checked = [d for d in deps if not d.get("skip_reason")]
    if not checked:
        print(f"dependency audit: not checked (the {service} advisory source answered for none of "
              f"{len(deps)} packages: offline or unreachable)")
        return 0
    vulnerable = [d for d in checked if d.get("vulns")]
    skipped = len(deps) - len(checked)
    note = f"; {skipped} not checked" if skipped else ""
    if not vulnerable:
        print(f"dependency audit: {len(checked)} packages checked, no known vulnerabilities{note}")
        return 0
    print(f"dependency audit: {len(vulnerable)} vulnerable package(s) of {len(checked)} checked{note}:")
    for dep in vulnerable:
        for v in dep["vulns"]:
            fixed = ", ".join(v.get("fix_versions") or []) or "no fixed version yet"
            print(f"  {dep['name']} {dep.get('version', '?')}: {v.get('id')} (fixed in {fixed})")
    print("see docs/security.md, 'Upgrading dependencies'")
    return 1


if __name__ == "__main__":
    sys.exit(main())
