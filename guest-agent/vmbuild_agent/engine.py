"""Running validated documents: phases in document order, steps with loops, conditions,
retries, timeouts and onFailure; reboot requests save a state to resume from.

The report being built *is* detailedoutput.json: step records join their phase when the
step starts, so a saved state always holds the step that was running.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vmbuild_agent import actions
from vmbuild_agent.console import Console
from vmbuild_agent.document import (
    MAX_NESTING,
    Document,
    Phase,
    Step,
    Validator,
    bind_variables,
    loop_iterations,
    parameter_problems,
    resolve_document,
)
from vmbuild_agent.errors import (
    EXIT_FAILED,
    EXIT_REBOOT,
    EXIT_SUCCESS,
    InvalidInput,
    RebootRequested,
    StepFailed,
    StepTimeout,
)
from vmbuild_agent.expressions import Scope, SubstitutionError, evaluate, substitute
from vmbuild_agent.procutil import Completed, run_streaming

STATE_FILE = "state.json"
MAX_REBOOTS = 50


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write: a reader never sees half a file, a crash never leaves one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fingerprint(docs: list[Document], phases: list[str], params: list[dict]) -> str:
    """What must not change between a reboot and the resume."""
    blob = json.dumps(
        {"docs": [d.text for d in docs], "phases": phases, "params": params}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class StepContext:
    """What an action sees while it runs: output, deadline, processes, nested documents."""

    def __init__(self, engine: Engine, doc: Document, record: dict, deadline: float | None):
        self.engine = engine
        self.doc = doc
        self.record = record
        self.deadline = deadline
        self.cancel = threading.Event()
        self.extra: dict = {}
        self.work_dir = str(engine.work_root)

    def scratch_file(self, suffix: str = "") -> str:
        return self.engine.new_work_file(suffix)

    def output(self, text: str, stream: str = "stdout") -> None:
        self.engine.console.line(text)

    def check_deadline(self) -> None:
        if self.cancel.is_set() or (self.deadline is not None and time.monotonic() > self.deadline):
            raise StepTimeout("step timed out")

    def run(self, argv: list[str], env: dict | None = None, cwd: str | None = None) -> Completed:
        done = run_streaming(
            argv, lambda _s, line: self.output(line), self.deadline, cwd, env, self.cancel
        )
        if done.timed_out:
            raise StepTimeout(f"{os.path.basename(argv[0])} was killed: step timed out")
        return done

    def execute_document(self, target: str, phases: list | None, params: dict) -> dict:
        return self.engine.run_nested(self, target, phases, params)


class Engine:
    """One execution of a list of documents."""

    def __init__(
        self,
        documents: list[Document],
        parameters: list[dict],
        phases: list[str],
        exec_dir: Path,
        state_dir: Path,
        execution_id: str,
        console: Console,
    ) -> None:
        self.documents = documents
        self.parameters = parameters
        self.phases = phases
        self.exec_dir = exec_dir
        self.state_dir = state_dir
        self.execution_id = execution_id
        self.console = console
        self.frames: list[dict] = []  # the position, one frame per (nested) document
        self.pending: list[dict] = []  # frames still to resume into
        self.reboots = 0
        self.work_root = Path(tempfile.mkdtemp(prefix="vmbuild-agent-"))
        self.work_count = 0
        self.report: dict = {"executionId": execution_id, "status": None, "documents": []}
        self.fingerprint = fingerprint(documents, phases, parameters)

    def new_work_file(self, suffix: str) -> str:
        """A fresh file name in the execution's scratch folder (one folder: mkdir is slow)."""
        self.work_count += 1
        return str(self.work_root / f"{self.work_count}{suffix}")

    # -- state ----------------------------------------------------------------------------

    def load_state(self) -> bool:
        """Pick up a saved state (after a reboot); False when there is none."""
        path = self.state_dir / STATE_FILE
        if not path.exists():
            return False
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("fingerprint") != self.fingerprint:
            raise InvalidInput(
                f"{path}: the saved state belongs to other documents, phases or parameters; "
                "re-run the same command line or remove the state directory"
            )
        self.report = state["report"]
        self.pending = state["frames"]
        self.reboots = state.get("reboots", 0)
        self.console.line(f"==> resuming execution {self.execution_id} after a reboot")
        return True

    def snapshot(self) -> list[dict]:
        return [dict(f, steps=dict(f["steps"])) for f in self.frames]

    def save_state(self, frames: list[dict], rerun: bool) -> None:
        frames[-1]["rerun"] = rerun
        state = {
            "executionId": self.execution_id,
            "fingerprint": self.fingerprint,
            "frames": frames,
            "report": self.report,
            "reboots": self.reboots + 1,
        }
        write_json(self.state_dir / STATE_FILE, state)

    def clear_state(self) -> None:
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    # -- running --------------------------------------------------------------------------

    def run(self) -> int:
        """Run everything; returns the exit code (0, 1 or 194)."""
        try:
            # A state that does not match raises here, before the saved report is touched.
            resuming = self.load_state()
            if resuming and self.reboots > MAX_REBOOTS:
                raise InvalidInput(f"more than {MAX_REBOOTS} reboots in one execution")
        except BaseException:
            shutil.rmtree(self.work_root, ignore_errors=True)
            raise
        try:
            return self._run(resuming)
        finally:
            shutil.rmtree(self.work_root, ignore_errors=True)
            if self.report["status"] is None:  # interrupted (Ctrl-C, SIGTERM, agent bug)
                self.report["status"] = "Failed"
            write_json(self.exec_dir / "detailedoutput.json", self.report)

    def _run(self, resuming: bool) -> int:
        start_doc = self.pending[0]["document"] if resuming else 0
        try:
            for index, doc in enumerate(self.documents):
                if index < start_doc:
                    continue
                if index < len(self.report["documents"]):
                    record = self.report["documents"][index]
                else:
                    record = {"name": doc.name, "path": doc.path, "status": None, "phases": []}
                    self.report["documents"].append(record)
                scope = Scope(bind_variables(doc, self.parameters[index]))
                status = self.run_document(doc, self.phases, scope, record, index)
                if status == "Failed":
                    break
        except RebootRequested as exc:
            self.save_state(exc.frames or self.snapshot(), exc.rerun)
            self.report["status"] = "RebootRequested"
            self.console.line(f"==> reboot requested ({exc}); state saved in {self.state_dir}")
            return EXIT_REBOOT
        self.clear_state()
        statuses = [d["status"] for d in self.report["documents"]]
        self.report["status"] = rollup(statuses)
        return EXIT_FAILED if self.report["status"] == "Failed" else EXIT_SUCCESS

    def run_document(
        self, doc: Document, phases: list[str], scope: Scope, record: dict, index: Any
    ) -> str:
        resume = self.pending.pop(0) if self.pending else None
        if resume is not None:
            scope.steps.update(resume["steps"])
        frame = {"document": index, "phase": None, "step": 0, "iteration": 0, "steps": scope.steps}
        self.frames.append(frame)
        try:
            for phase in doc.phases:
                if phase.name not in phases:
                    continue
                done_before = any(p["name"] == phase.name for p in record["phases"])
                if resume is not None and phase.name != resume["phase"] and done_before:
                    continue  # finished before the reboot
                existing = next((p for p in record["phases"] if p["name"] == phase.name), None)
                phase_record = existing or {"name": phase.name, "status": None, "steps": []}
                if existing is None:
                    record["phases"].append(phase_record)
                frame["phase"] = phase.name
                status = self.run_phase(doc, phase, scope, phase_record, frame, resume)
                resume = None
                if status == "Failed":
                    break
        finally:
            self.frames.pop()
        record["status"] = rollup([p["status"] for p in record["phases"]])
        return record["status"]

    def run_phase(
        self, doc: Document, phase: Phase, scope: Scope, record: dict, frame: dict, resume: Any
    ) -> str:
        failed = False
        first = resume["step"] if resume is not None else 0
        for index, step in enumerate(phase.steps):
            if index < first:
                continue
            frame["step"] = index
            resumed = resume is not None and index == first
            if resumed:
                step_record = record["steps"][-1]
                start_iteration = resume["iteration"] + (0 if resume.get("rerun", True) else 1)
            else:
                step_record = {
                    "name": step.name, "action": step.action, "status": None,
                    "startTime": now(), "endTime": None, "inputs": None, "outputs": None,
                    "failureMessage": None,
                }  # fmt: skip
                record["steps"].append(step_record)
                start_iteration = 0
            status = self.run_step(
                doc, phase, step, scope, step_record, frame, start_iteration, resumed
            )
            if status == "Failed":
                failed = True
                if step.on_failure == "Abort":
                    break
        statuses = [s["status"] for s in record["steps"]]
        record["status"] = "Failed" if failed else rollup(statuses)
        return record["status"]

    def run_step(
        self,
        doc: Document,
        phase: Phase,
        step: Step,
        scope: Scope,
        record: dict,
        frame: dict,
        start_iteration: int,
        resumed: bool,
    ) -> str:
        label = f"{doc.name}/{phase.name}/{step.name}"
        if not resumed:
            self.console.line(f"==> [{label}] start ({step.action})")
        started = time.monotonic()
        try:
            if step.condition is not None and not resumed:
                decision = self.decide(step.condition, scope)
                if decision == "Skip":
                    return self.finish(record, label, "Skipped", started)
                if decision == "Abort":
                    raise StepFailed("the step's 'if' condition says Abort")
            iterations: Sequence = [None]
            if step.loop is not None:
                try:
                    iterations = loop_iterations(substitute(step.loop, scope))
                except (ValueError, TypeError, KeyError) as exc:
                    raise StepFailed(f"loop: {exc}") from None
            outputs: Any = {}
            action = actions.REGISTRY[step.action]()
            for index in range(start_iteration, len(iterations)):
                frame["iteration"] = index
                it_scope = scope
                if step.loop is not None:
                    value = {"index": index, "value": iterations[index]}
                    names = {"loop": value}
                    if step.loop.get("name"):
                        names[str(step.loop["name"])] = value
                    it_scope = scope.child(names)
                inputs = substitute(step.inputs, it_scope)
                record["inputs"] = inputs
                outputs = self.attempts(action, inputs, step, doc, record, label)
                scope.steps[f"{phase.name}.{step.name}"] = {"inputs": inputs, "outputs": outputs}
            if step.loop is not None:
                record["loop"] = {"iterations": len(iterations)}
            record["outputs"] = outputs
            scope.steps[f"{phase.name}.{step.name}"] = {
                "inputs": record["inputs"],
                "outputs": outputs,
            }
            return self.finish(record, label, "Success", started)
        except RebootRequested as exc:
            if exc.frames is None:  # the innermost step records where to resume
                exc.frames = self.snapshot()
            raise
        except SubstitutionError as exc:
            return self.fail(record, label, step, str(exc), started)
        except StepFailed as exc:
            return self.fail(record, label, step, str(exc), started)

    def decide(self, condition: Any, scope: Scope) -> str:
        if isinstance(condition, list):
            condition = condition[0]
        condition = substitute(condition, scope)
        expr = {k: v for k, v in condition.items() if k not in ("then", "else")}
        if evaluate(expr):
            return str(condition.get("then", "Execute"))
        return str(condition.get("else", "Skip"))

    def attempts(
        self, action: Any, inputs: Any, step: Step, doc: Document, record: dict, label: str
    ):
        last: StepFailed | None = None
        for attempt in range(1, step.max_attempts + 1):
            try:
                return self.invoke(action, inputs, step, doc, record)
            except StepFailed as exc:
                last = exc
                if attempt < step.max_attempts:
                    self.console.line(
                        f"==> [{label}] attempt {attempt}/{step.max_attempts} failed: {exc}; "
                        "retrying"
                    )
        if step.max_attempts > 1:
            raise StepFailed(f"{last} (after {step.max_attempts} attempts)")
        raise last  # type: ignore[misc]

    def invoke(self, action: Any, inputs: Any, step: Step, doc: Document, record: dict) -> dict:
        deadline = None if step.timeout is None else time.monotonic() + step.timeout
        ctx = StepContext(self, doc, record, deadline)
        if step.timeout is None:
            box: dict = {}
            _call(action, inputs, ctx, box)
            outputs = _unbox(action, box)
        else:
            outputs = self._in_thread(action, inputs, ctx, step.timeout)
        if ctx.extra:
            record.update(ctx.extra)
        return outputs

    def _in_thread(self, action: Any, inputs: Any, ctx: StepContext, timeout: float) -> dict:
        """Run the action with a deadline it cannot ignore (its thread is abandoned)."""
        box: dict = {}
        done = threading.Event()
        worker = threading.Thread(target=_call, args=(action, inputs, ctx, box, done), daemon=True)
        worker.start()
        # An Event, not Thread.join: a signal during join() can mark the thread as stopped
        # (bpo-45274), and then nothing would wait for the step to kill its processes.
        try:
            finished = done.wait(timeout)
        except BaseException:
            # Interrupted: let the step kill its process group before the agent exits.
            ctx.cancel.set()
            done.wait(5)
            raise
        if not finished:
            ctx.cancel.set()
            done.wait(5)
            raise StepTimeout(f"step timed out after {timeout} s (timeoutSeconds)")
        return _unbox(action, box)

    def finish(self, record: dict, label: str, status: str, started: float) -> str:
        record["status"] = status
        record["endTime"] = now()
        self.console.line(f"==> [{label}] {status} ({time.monotonic() - started:.2f} s)")
        return status

    def fail(self, record: dict, label: str, step: Step, message: str, started: float) -> str:
        record["failureMessage"] = message
        status = "IgnoredFailure" if step.on_failure == "Ignore" else "Failed"
        self.console.line(f"==> [{label}] failed: {message}")
        self.finish(record, label, status, started)
        return status

    # -- nested documents -----------------------------------------------------------------

    def run_nested(self, ctx: StepContext, target: str, phases: list | None, params: dict) -> dict:
        path = resolve_document(ctx.doc.path, target)
        depth = len(self.frames)
        if depth > MAX_NESTING:
            raise StepFailed(f"ExecuteDocument: nesting deeper than {MAX_NESTING} levels")
        stack = [os.path.realpath(self.doc_path(f)) for f in self.frames]
        if os.path.realpath(path) in stack:
            raise StepFailed(f"ExecuteDocument: cycle: {path} is already running")
        validator = Validator()
        doc = validator.load(path)
        problems = [str(p) for p in validator.problems]
        if doc is not None:
            problems += parameter_problems(doc, params)
        if problems or doc is None:
            raise StepFailed(f"ExecuteDocument {path}: " + "; ".join(problems))
        existing = ctx.record.get("documents")
        record = existing[0] if (existing and self.pending) else {
            "name": doc.name, "path": path, "status": None, "phases": [],
        }  # fmt: skip
        ctx.record["documents"] = [record]
        run_phases = phases or [p.name for p in doc.phases]
        scope = Scope(bind_variables(doc, params))
        self.run_document(doc, run_phases, scope, record, path)
        return record

    def doc_path(self, frame: dict) -> str:
        index = frame["document"]
        return self.documents[index].path if isinstance(index, int) else str(index)


def _call(
    action: Any, inputs: Any, ctx: StepContext, box: dict, done: threading.Event | None = None
) -> None:
    try:
        box["outputs"] = action.run(inputs, ctx)
    except BaseException as exc:  # handed to the engine's thread by _unbox
        box["error"] = exc
    finally:
        if done is not None:
            done.set()


def _unbox(action: Any, box: dict) -> dict:
    error = box.get("error")
    if isinstance(error, (StepFailed, RebootRequested, KeyboardInterrupt, SystemExit)):
        raise error
    if isinstance(error, OSError):
        raise StepFailed(f"{action.name}: {error}")
    if error is not None:
        raise StepFailed(f"{action.name}: unexpected error: {error!r}")
    return box.get("outputs") or {}


def rollup(statuses: list) -> str:
    """Document/phase status from its children's statuses."""
    if any(s == "Failed" for s in statuses):
        return "Failed"
    if any(s in ("IgnoredFailure", "SuccessWithIgnoredFailure") for s in statuses):
        return "SuccessWithIgnoredFailure"
    return "Success"
