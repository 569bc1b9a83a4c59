"""Waiting for cloud-init to finish in a guest, without starting cloud-init's own CLI.

`cloud-init status --wait` imports cloud-init's Python package before it looks at
anything, which costs 3 to 7 s per call under TCG. What it waits for is plain files:
cloud-init writes `/run/cloud-init/result.json` when its last stage ends, and the
systemd generator leaves `/run/cloud-init/disabled` when it decides not to run. A shell
loop watches for them, and the host reads the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

WAIT_SCRIPT = r"""
if ! command -v cloud-init >/dev/null 2>&1 && [ ! -d /run/cloud-init ]; then
    echo '{"vmbuild": "not-installed"}'; exit 0
fi
while :; do
    if [ -s /run/cloud-init/result.json ]; then
        cat /run/cloud-init/result.json; exit 0
    fi
    if [ -e /run/cloud-init/disabled ] || [ -e /etc/cloud/cloud-init.disabled ]; then
        echo '{"vmbuild": "disabled"}'; exit 0
    fi
    sleep 0.2
done
"""


@dataclass(frozen=True)
class Outcome:
    """What cloud-init reported: errors fail readiness, recoverable ones are warnings."""

    state: str  # "done", "disabled", "not-installed"
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def parse_result(text: str) -> Outcome:
    """Read the wait script's output (result.json, or vmbuild's own marker)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"unreadable /run/cloud-init/result.json: {exc}: {text[:300]!r}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"unexpected /run/cloud-init/result.json: {text[:300]!r}")
    if "vmbuild" in data:
        return Outcome(state=str(data["vmbuild"]))
    v1 = data.get("v1") or {}
    errors = tuple(str(e) for e in v1.get("errors") or ())
    recoverable = v1.get("recoverable_errors") or {}
    warnings = tuple(
        f"{level}: {message}"
        for level, messages in recoverable.items()
        for message in (messages or ())
    )
    return Outcome(state="done", errors=errors, warnings=warnings)
