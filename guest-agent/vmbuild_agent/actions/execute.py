"""ExecuteBash, ExecuteBinary and ExecuteDocument: scripts, programs and nested documents."""

from __future__ import annotations

import os
import shutil
from typing import Any

from vmbuild_agent.actions import Action, Field, register
from vmbuild_agent.errors import EXIT_REBOOT, RebootRequested, StepFailed
from vmbuild_agent.expressions import has_placeholder


def _finish(what: str, done: Any) -> dict:
    if done.returncode == EXIT_REBOOT:
        raise RebootRequested(f"{what} exited with 194 (reboot requested)", rerun=True)
    if done.returncode != 0:
        tail = done.stderr_tail.strip()
        detail = f"; stderr: {tail}" if tail else ""
        raise StepFailed(f"{what} failed with exit code {done.returncode}{detail}")
    return {"stdout": done.stdout}


@register
class ExecuteBash(Action):
    """Runs `commands` as one bash script; stdout becomes the `stdout` output."""

    name = "ExecuteBash"
    shape = "mapping"
    fields = {"commands": Field("list", required=True)}
    outputs = ("stdout",)

    def run(self, inputs: Any, ctx: Any) -> dict:
        item = self.with_defaults(self.items(inputs)[0])  # type: ignore[index]
        commands = item["commands"]
        if isinstance(commands, str):
            commands = [commands]
        script = ctx.scratch_file(".sh")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write("\n".join(str(c) for c in commands) + "\n")
        try:
            done = ctx.run(["bash", script])
        finally:
            os.unlink(script)
        return _finish("ExecuteBash script", done)


@register
class ExecuteBinary(Action):
    """Runs the program at `path` with `arguments`; stdout becomes the `stdout` output."""

    name = "ExecuteBinary"
    shape = "mapping"
    fields = {"path": Field("string", required=True), "arguments": Field("list", default=[])}
    outputs = ("stdout",)

    def run(self, inputs: Any, ctx: Any) -> dict:
        item = self.with_defaults(self.items(inputs)[0])  # type: ignore[index]
        path = str(item["path"])
        found = path if os.sep in path else shutil.which(path)
        if not found or not os.path.isfile(found):
            raise StepFailed(f"ExecuteBinary: binary not found: {path}")
        if not os.access(found, os.X_OK):
            raise StepFailed(f"ExecuteBinary: not executable: {found}")
        args = [str(a) for a in (item["arguments"] or [])]
        done = ctx.run([found, *args])
        return _finish(f"ExecuteBinary {path}", done)


@register
class ExecuteDocument(Action):
    """Runs another component document (path relative to this one) with its own parameters."""

    name = "ExecuteDocument"
    shape = "mapping"
    fields = {
        "document": Field("string", required=True),
        "phases": Field("string"),
        "parameters": Field("list", default=[]),
    }
    outputs = ("status",)

    def check(self, inputs: Any) -> list[str]:
        problems = super().check(inputs)
        items = self.items(inputs) or []
        params = items[0].get("parameters") if items and isinstance(items[0], dict) else None
        if isinstance(params, list):
            for entry in params:
                if has_placeholder(entry):
                    continue
                if not (isinstance(entry, dict) and "name" in entry and "value" in entry):
                    problems.append("ExecuteDocument parameters are a list of {name, value}")
        return problems

    def run(self, inputs: Any, ctx: Any) -> dict:
        item = self.with_defaults(self.items(inputs)[0])  # type: ignore[index]
        phases = [p.strip() for p in str(item["phases"] or "").split(",") if p.strip()]
        params = {str(p["name"]): str(p["value"]) for p in item["parameters"] or []}
        report = ctx.execute_document(str(item["document"]), phases or None, params)
        ctx.extra["documents"] = [report]
        if report["status"] == "Failed":
            failed = [
                f"{ph['name']}.{st['name']}: {st.get('failureMessage')}"
                for ph in report["phases"]
                for st in ph["steps"]
                if st["status"] == "Failed"
            ]
            raise StepFailed(
                f"document {report['name']} failed" + (f" ({'; '.join(failed)})" if failed else "")
            )
        return {"status": report["status"]}
