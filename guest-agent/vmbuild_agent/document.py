"""Component documents: the typed model and the validation that runs before anything executes.

Validation collects every problem it finds (unknown actions, missing inputs or parameters,
loops that never end, chaining to steps that have not run yet, duplicate names, wrong
types), each naming the document, phase, step and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild_agent import actions
from vmbuild_agent.errors import InvalidInput, Problem
from vmbuild_agent.expressions import (
    PHASES,
    check_condition,
    has_placeholder,
    parse_reference,
    references,
)
from vmbuild_agent.loader import line_of, load_file

ON_FAILURE = ("Abort", "Continue", "Ignore")
IF_ACTIONS = ("Abort", "Execute", "Skip")
DEFAULT_TIMEOUT = 7200
MAX_NESTING = 3
DOC_KEYS = {"name", "description", "schemaVersion", "parameters", "constants", "phases"}
STEP_KEYS = {"name", "action", "inputs", "onFailure", "timeoutSeconds", "maxAttempts", "loop", "if"}
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass
class Param:
    name: str
    default: str | None = None
    description: str = ""
    required: bool = True


@dataclass
class Step:
    name: str
    action: str
    inputs: Any = None
    on_failure: str = "Abort"
    timeout: int | None = DEFAULT_TIMEOUT  # None: no timeout
    max_attempts: int = 1
    loop: dict | None = None
    condition: dict | None = None
    line: int | None = None


@dataclass
class Phase:
    name: str
    steps: list = field(default_factory=list)
    line: int | None = None


@dataclass
class Document:
    path: str
    name: str
    description: str = ""
    parameters: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)
    text: str = ""

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_or_placeholder(value: Any) -> bool:
    if has_placeholder(value):
        return True
    if _is_int(value):
        return True
    try:
        int(str(value))
        return True
    except ValueError:
        return False


class Validator:
    """Loads documents and collects problems; nested ExecuteDocument targets are checked too."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.cache: dict[str, Document | None] = {}

    # -- entry points ----------------------------------------------------------------------

    def load(self, path: str, stack: tuple = ()) -> Document | None:
        real = os.path.realpath(path)
        if real in self.cache:
            return self.cache[real]
        self.cache[real] = None  # a cycle finds None here, and stack reports it
        try:
            data, text = load_file(Path(path))
        except InvalidInput as exc:
            self.problems.extend(exc.problems or [Problem(path, str(exc))])
            return None
        doc = self.parse(path, data, text, (*stack, real))
        self.cache[real] = doc
        return doc

    def add(self, doc: str, message: str, phase=None, step=None, line=None) -> None:
        self.problems.append(Problem(doc, message, phase, step, line))

    # -- parsing ---------------------------------------------------------------------------

    def parse(self, path: str, data: Any, text: str, stack: tuple) -> Document | None:
        if not isinstance(data, dict):
            self.add(path, "a component document must be a mapping", line=1)
            return None
        for key in sorted(set(map(str, data)) - DOC_KEYS):
            self.add(path, f"unknown top-level key '{key}'", line=line_of(data))
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            self.add(path, "missing 'name' (a string)", line=line_of(data))
            name = Path(path).stem
        version = data.get("schemaVersion")
        if version is None:
            self.add(path, "missing 'schemaVersion' (1.0)", line=line_of(data))
        elif str(version) not in ("1.0", "1"):
            self.add(path, f"unsupported schemaVersion {version!r} (only 1.0)", line=line_of(data))
        doc = Document(path=path, name=name, description=str(data.get("description") or ""))
        doc.text = text
        doc.parameters = self._parameters(path, data.get("parameters"), data)
        doc.constants = self._constants(path, data.get("constants"), data)
        for clash in sorted(set(doc.parameters) & set(doc.constants)):
            self.add(path, f"'{clash}' is both a parameter and a constant", line=line_of(data))
        doc.phases = self._phases(doc, data.get("phases"), data)
        self._check_references(doc)
        self._check_nested(doc, stack)
        return doc

    def _named_entries(self, path: str, value: Any, what: str, data: Any) -> list:
        """AWSTOE lists parameters and constants as [{Name: {...}}, ...]."""
        if value is None:
            return []
        if isinstance(value, dict):  # tolerate a plain mapping of name -> spec
            value = [{k: v} for k, v in value.items()]
        if not isinstance(value, list):
            self.add(path, f"'{what}' must be a list", line=line_of(data))
            return []
        out = []
        seen = set()
        for entry in value:
            line = line_of(entry) or line_of(data)
            if not isinstance(entry, dict) or len(entry) != 1:
                self.add(path, f"each {what} entry must be a mapping '<name>: {{...}}'", line=line)
                continue
            ((name, spec),) = entry.items()
            name = str(name)
            if name in seen:
                self.add(path, f"duplicate {what[:-1]} '{name}'", line=line)
            seen.add(name)
            if not isinstance(spec, dict):
                self.add(path, f"{what[:-1]} '{name}' must be a mapping", line=line)
                spec = {}
            if spec.get("type", "string") != "string":
                self.add(path, f"{what[:-1]} '{name}': type must be string", line=line)
            out.append((name, spec, line))
        return out

    def _parameters(self, path: str, value: Any, data: Any) -> dict:
        params = {}
        for name, spec, line in self._named_entries(path, value, "parameters", data):
            for key in sorted(set(map(str, spec)) - {"type", "default", "description"}):
                self.add(path, f"parameter '{name}': unknown key '{key}'", line=line)
            default = spec.get("default")
            if default is not None and not isinstance(default, (str, int, float, bool)):
                self.add(path, f"parameter '{name}': default must be a string", line=line)
            params[name] = Param(
                name,
                None if default is None else str(default),
                str(spec.get("description") or ""),
                required="default" not in spec,
            )
        return params

    def _constants(self, path: str, value: Any, data: Any) -> dict:
        constants = {}
        for name, spec, line in self._named_entries(path, value, "constants", data):
            for key in sorted(set(map(str, spec)) - {"type", "value", "description"}):
                self.add(path, f"constant '{name}': unknown key '{key}'", line=line)
            if "value" not in spec:
                self.add(path, f"constant '{name}' needs a 'value'", line=line)
            constants[name] = "" if spec.get("value") is None else str(spec.get("value"))
        return constants

    def _phases(self, doc: Document, value: Any, data: Any) -> list:
        path = doc.path
        if not isinstance(value, list) or not value:
            self.add(path, "'phases' must be a non-empty list", line=line_of(data))
            return []
        phases = []
        seen = set()
        for raw in value:
            line = line_of(raw) or line_of(data)
            if not isinstance(raw, dict):
                self.add(path, "each phase must be a mapping with 'name' and 'steps'", line=line)
                continue
            name = raw.get("name")
            for key in sorted(set(map(str, raw)) - {"name", "steps"}):
                self.add(path, f"unknown key '{key}' in phase", phase=name, line=line)
            if name not in PHASES:
                self.add(path, f"phase name must be one of {', '.join(PHASES)}, not {name!r}",
                         line=line)  # fmt: skip
                continue
            if name in seen:
                self.add(path, f"duplicate phase '{name}'", phase=name, line=line)
                continue
            seen.add(name)
            phase = Phase(name, line=line)
            steps = raw.get("steps")
            if not isinstance(steps, list) or not steps:
                self.add(path, "'steps' must be a non-empty list", phase=name, line=line)
                steps = []
            names = set()
            for raw_step in steps:
                step = self._step(doc, name, raw_step, line)
                if step is None:
                    continue
                if step.name in names:
                    self.add(path, f"duplicate step name '{step.name}'", name, step.name, step.line)
                    continue
                names.add(step.name)
                phase.steps.append(step)
            phases.append(phase)
        return phases

    def _step(self, doc: Document, phase: str, raw: Any, phase_line: int | None) -> Step | None:
        path = doc.path
        line = line_of(raw) or phase_line
        if not isinstance(raw, dict):
            self.add(path, "each step must be a mapping", phase, line=line)
            return None
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            self.add(path, f"step name must be letters, digits, '_' or '-', not {name!r}",
                     phase, line=line)  # fmt: skip
            return None

        def problem(message: str) -> None:
            self.add(path, message, phase, name, line)

        for key in sorted(set(map(str, raw)) - STEP_KEYS):
            problem(f"unknown key '{key}' in step")
        step = Step(name=name, action=str(raw.get("action")), inputs=raw.get("inputs"), line=line)
        action_cls = actions.get(step.action) if "action" in raw else None
        if "action" not in raw:
            problem("missing 'action'")
        elif action_cls is None:
            problem(f"unknown action '{step.action}'")
        else:
            for message in action_cls().check(step.inputs):
                problem(message)
        on_failure = raw.get("onFailure", "Abort")
        if on_failure not in ON_FAILURE:
            problem(f"onFailure must be one of {', '.join(ON_FAILURE)}, not {on_failure!r}")
        else:
            step.on_failure = on_failure
        timeout = raw.get("timeoutSeconds", DEFAULT_TIMEOUT)
        if not _is_int(timeout) or (timeout <= 0 and timeout != -1):
            problem(f"timeoutSeconds must be a positive integer or -1, not {timeout!r}")
        else:
            step.timeout = None if timeout == -1 else timeout
        attempts = raw.get("maxAttempts", 1)
        if not _is_int(attempts) or attempts < 1:
            problem(f"maxAttempts must be an integer >= 1, not {attempts!r}")
        else:
            step.max_attempts = attempts
        if "loop" in raw:
            for message in self._loop_problems(raw["loop"]):
                problem(message)
            step.loop = raw["loop"]
        if "if" in raw:
            for message in self._if_problems(raw["if"]):
                problem(message)
            step.condition = raw["if"]
        return step

    def _loop_problems(self, loop: Any) -> list[str]:
        if not isinstance(loop, dict):
            return ["loop must be a mapping with 'for' or 'forEach'"]
        problems = []
        unknown = set(map(str, loop)) - {"name", "for", "forEach"}
        if unknown:
            problems.append(f"unknown key(s) in loop: {', '.join(sorted(unknown))}")
        if "name" in loop and (not isinstance(loop["name"], str) or not _NAME.match(loop["name"])):
            problems.append(f"loop name must be letters, digits, '_' or '-', not {loop['name']!r}")
        kinds = [k for k in ("for", "forEach") if k in loop]
        if len(kinds) != 1:
            return [*problems, "loop needs exactly one of 'for' or 'forEach'"]
        if kinds[0] == "for":
            spec = loop["for"]
            if not isinstance(spec, dict):
                return [*problems, "loop 'for' must be a mapping with start, end, updateBy"]
            for key in ("start", "end", "updateBy"):
                if key not in spec:
                    problems.append(f"loop 'for' needs '{key}'")
                elif not _int_or_placeholder(spec[key]):
                    problems.append(f"loop 'for' {key} must be an integer, not {spec[key]!r}")
            if problems:
                return problems
            if all(not has_placeholder(spec[k]) for k in ("start", "end", "updateBy")):
                start, end, by = (int(spec[k]) for k in ("start", "end", "updateBy"))
                if (by == 0 and start != end) or (end - start) * by < 0:
                    problems.append(
                        f"loop never ends: from {start} to {end} by {by} never reaches the end"
                    )
            return problems
        spec = loop["forEach"]
        if isinstance(spec, list):
            if not spec:
                problems.append("loop 'forEach' list is empty")
        elif isinstance(spec, dict):
            if "list" not in spec:
                problems.append("loop 'forEach' mapping needs 'list' (and optional 'delimiter')")
            if set(map(str, spec)) - {"list", "delimiter"}:
                problems.append("loop 'forEach' mapping takes only 'list' and 'delimiter'")
            if "delimiter" in spec and (
                not isinstance(spec["delimiter"], str) or not spec["delimiter"]
            ):
                problems.append("loop 'forEach' delimiter must be a non-empty string")
        elif not has_placeholder(spec):
            problems.append("loop 'forEach' must be a list or a mapping {list, delimiter}")
        return problems

    def _if_problems(self, cond: Any) -> list[str]:
        if isinstance(cond, list) and len(cond) == 1:
            cond = cond[0]
        if not isinstance(cond, dict):
            return ["'if' must be a condition mapping"]
        problems = []
        for key in ("then", "else"):
            if key in cond and cond[key] not in IF_ACTIONS:
                problems.append(f"'if' {key} must be one of {', '.join(IF_ACTIONS)}")
        expr = {k: v for k, v in cond.items() if k not in ("then", "else")}
        problems.extend(f"'if': {p}" for p in check_condition(expr))
        return problems

    # -- cross-step checks -----------------------------------------------------------------

    def _check_references(self, doc: Document) -> None:
        order: dict[str, tuple] = {}
        for p_index, phase in enumerate(doc.phases):
            for s_index, step in enumerate(phase.steps):
                order[f"{phase.name}.{step.name}"] = (p_index, s_index, step)
        variables = set(doc.parameters) | set(doc.constants)
        for p_index, phase in enumerate(doc.phases):
            for s_index, step in enumerate(phase.steps):
                loop_names: tuple = ("loop",)
                if isinstance(step.loop, dict) and isinstance(step.loop.get("name"), str):
                    loop_names = ("loop", step.loop["name"])
                bodies = references([step.inputs, step.condition])
                bodies += references(step.loop)  # a loop definition cannot use its own values
                for body in bodies:
                    message = self._reference_problem(
                        body, loop_names if step.loop else (), variables, order, (p_index, s_index)
                    )
                    if message:
                        self.add(doc.path, message, phase.name, step.name, step.line)

    def _reference_problem(self, body, loop_names, variables, order, here) -> str | None:
        ref = parse_reference(body, tuple(loop_names))
        if ref is None:
            return f"malformed placeholder {{{{ {body} }}}}"
        if ref.kind == "loop":
            if ref.name not in loop_names:
                return f"{{{{ {body} }}}} is used outside a loop"
            return None
        if ref.kind == "variable":
            if ref.name not in variables:
                return f"unknown parameter or constant {{{{ {body} }}}}"
            return None
        target = order.get(f"{ref.phase}.{ref.step}")
        if target is None:
            return f"{{{{ {body} }}}} chains to step {ref.phase}.{ref.step}, which does not exist"
        if (target[0], target[1]) >= here:
            return (
                f"{{{{ {body} }}}} chains to step {ref.phase}.{ref.step}, "
                "which has not run yet at this point"
            )
        declared = (
            actions.REGISTRY[target[2].action].outputs
            if target[2].action in actions.REGISTRY
            else None
        )
        first = ref.path[0] if ref.path else None
        if ref.section == "outputs" and declared is not None and first not in declared:
            names = ", ".join(declared) or "none"
            return (
                f"{{{{ {body} }}}}: {target[2].action} has no output '{first}' (outputs: {names})"
            )
        return None

    def _check_nested(self, doc: Document, stack: tuple) -> None:
        for phase in doc.phases:
            for step in phase.steps:
                if step.action != "ExecuteDocument" or not isinstance(step.inputs, dict):
                    continue
                target = step.inputs.get("document")
                if not isinstance(target, str) or has_placeholder(target):
                    continue
                full = resolve_document(doc.path, target)
                real = os.path.realpath(full)
                if real in stack:
                    self.add(doc.path, f"ExecuteDocument cycle: {target} is already being run",
                             phase.name, step.name, step.line)  # fmt: skip
                    continue
                if len(stack) > MAX_NESTING:
                    self.add(doc.path, f"ExecuteDocument nests deeper than {MAX_NESTING} levels",
                             phase.name, step.name, step.line)  # fmt: skip
                    continue
                if not os.path.isfile(full):
                    self.add(doc.path, f"ExecuteDocument: no such document {full}",
                             phase.name, step.name, step.line)  # fmt: skip
                    continue
                nested = self.load(full, stack)
                if nested is None:
                    continue
                given = {
                    str(p.get("name")): p.get("value")
                    for p in step.inputs.get("parameters") or []
                    if isinstance(p, dict)
                }
                for message in parameter_problems(nested, given):
                    self.add(doc.path, f"ExecuteDocument {target}: {message}",
                             phase.name, step.name, step.line)  # fmt: skip


def resolve_document(parent: str, target: str) -> str:
    """ExecuteDocument paths are relative to the document that names them."""
    if os.path.isabs(target):
        return target
    return os.path.join(os.path.dirname(os.path.abspath(parent)), target)


def parameter_problems(doc: Document, given: dict) -> list[str]:
    problems = []
    for name in sorted(set(given) - set(doc.parameters)):
        problems.append(f"parameter '{name}' is not declared by document '{doc.name}'")
    for param in doc.parameters.values():
        if param.required and param.name not in given:
            problems.append(f"missing required parameter '{param.name}'")
    return problems


def bind_variables(doc: Document, given: dict) -> dict:
    """Parameters (given or defaulted) and constants of a document."""
    values = {name: p.default for name, p in doc.parameters.items() if p.default is not None}
    values.update({k: str(v) for k, v in given.items()})
    values.update(doc.constants)
    return values


def check_phase_chaining(doc: Document, phases: list[str], problems: list[Problem]) -> None:
    """A step may only chain to a phase that runs in this execution."""
    for phase in doc.phases:
        if phase.name not in phases:
            continue
        for step in phase.steps:
            for body in references([step.inputs, step.condition, step.loop]):
                ref = parse_reference(body)
                if ref is not None and ref.kind == "chain" and ref.phase not in phases:
                    problems.append(Problem(
                        doc.path,
                        f"{{{{ {body} }}}} chains to phase '{ref.phase}', which is not run "
                        f"(phases: {','.join(phases)})",
                        phase.name, step.name, step.line,
                    ))  # fmt: skip


def loop_iterations(loop: dict) -> Sequence:
    """The values of a substituted loop definition (a `for` stays a lazy range)."""
    if "for" in loop:
        spec = loop["for"]
        start, end, by = (int(str(spec[k])) for k in ("start", "end", "updateBy"))
        if (by == 0 and start != end) or (end - start) * by < 0:
            raise ValueError(f"loop never ends: from {start} to {end} by {by}")
        if by == 0:
            return [start]
        return range(start, end + (1 if by > 0 else -1), by)
    spec = loop["forEach"]
    if isinstance(spec, dict):
        text = "" if spec.get("list") is None else str(spec["list"])
        return text.split(spec.get("delimiter") or ",") if text else []
    if isinstance(spec, list):
        return spec
    if isinstance(spec, str):
        return spec.splitlines() if "\n" in spec else spec.split(",")
    raise ValueError("loop 'forEach' must be a list")
