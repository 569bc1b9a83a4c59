"""Command line: `validate` and `run`. The JSON summary is the only thing on stdout."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from vmbuild_agent import __version__
from vmbuild_agent.console import Console
from vmbuild_agent.document import (
    Document,
    Validator,
    check_phase_chaining,
    parameter_problems,
)
from vmbuild_agent.engine import STATE_FILE, Engine
from vmbuild_agent.errors import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_STARTED,
    AgentError,
    InvalidInput,
    Problem,
)
from vmbuild_agent.expressions import PHASES

_PAIR_SPLIT = re.compile(r",(?=[^,=]+=)")


def parse_parameters(text: str | None) -> dict:
    """`k=v,k2=v2` (a value may contain commas when the next item has its own `=`)."""
    if not text:
        return {}
    params = {}
    for pair in _PAIR_SPLIT.split(text):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"--parameters: expected name=value, got {pair!r}")
        params[name.strip()] = value
    return params


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def assign_parameters(
    docs: list[Document], flat: dict, file_data: Any, problems: list[Problem]
) -> list[dict]:
    """Parameters per document: flat ones go to every document declaring them;
    a parameters file may also key them by document path or name."""
    per_doc: list[dict] = [{} for _ in docs]
    keyed: dict = {}
    if isinstance(file_data, dict) and file_data:
        keys = {d.path for d in docs} | {d.name for d in docs}
        keys |= {str(Path(d.path).resolve()) for d in docs}
        if all(isinstance(v, dict) for v in file_data.values()) and set(file_data) <= keys:
            keyed = file_data
        else:
            flat = {**{k: str(v) for k, v in file_data.items()}, **flat}
    for name in sorted(flat):
        if not any(name in d.parameters for d in docs):
            where = docs[0].path if len(docs) == 1 else "(parameters)"
            problems.append(Problem(where, f"parameter '{name}' is not declared by any document"))
    for index, doc in enumerate(docs):
        given = {k: v for k, v in flat.items() if k in doc.parameters}
        for key in (doc.path, doc.name, str(Path(doc.path).resolve())):
            given.update({k: str(v) for k, v in (keyed.get(key) or {}).items()})
        for message in parameter_problems(doc, given):
            problems.append(Problem(doc.path, message))
        per_doc[index] = given
    return per_doc


def prepare(args: argparse.Namespace, phases: list[str] | None) -> tuple:
    """Load, validate and bind parameters; returns (docs, params, problems)."""
    paths = _split(args.documents)
    if not paths:
        raise InvalidInput("--documents: give at least one document")
    validator = Validator()
    docs = [validator.load(p) for p in paths]
    problems = list(validator.problems)
    loaded = [d for d in docs if d is not None]
    file_data = None
    if getattr(args, "parameters_file", None):
        try:
            file_data = json.loads(Path(args.parameters_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"--parameters-file {args.parameters_file}: {exc}") from None
    params = (
        assign_parameters(loaded, parse_parameters(args.parameters), file_data, problems)
        if loaded
        else []
    )
    if phases:
        for doc in loaded:
            check_phase_chaining(doc, phases, problems)
    return loaded, params, problems, len(loaded) == len(docs)


def cmd_validate(args: argparse.Namespace) -> int:
    phases = _split(args.phases) if args.phases else None
    _docs, _params, problems, _ok = prepare(args, phases)
    if args.json:
        print(
            json.dumps(
                {"valid": not problems, "problems": [p.to_dict() for p in problems]}, indent=2
            )
        )
    else:
        for problem in problems:
            print(str(problem))
        print("valid" if not problems else f"invalid: {len(problems)} problem(s)")
    return EXIT_INVALID if problems else 0


def _summary(report: dict, exec_dir: Path, exit_code: int) -> dict:
    return {
        "executionId": report["executionId"],
        "status": report["status"],
        "rebootRequested": exit_code == 194,
        "logDirectory": str(exec_dir),
        "documents": [
            {
                "name": d["name"],
                "status": d["status"],
                "phases": [
                    {
                        "name": ph["name"],
                        "status": ph["status"],
                        "steps": [
                            {k: st.get(k) for k in ("name", "action", "status", "failureMessage")}
                            for st in ph["steps"]
                        ],
                    }
                    for ph in d["phases"]
                ],
            }
            for d in report["documents"]
        ],
    }


def cmd_run(args: argparse.Namespace) -> int:
    phases = _split(args.phases)
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        raise InvalidInput(
            f"--phases: unknown phase(s) {', '.join(bad) or '(none)'}; use {','.join(PHASES)}"
        )
    log_dir = Path(args.log_directory).resolve()
    state_dir = Path(args.state_directory).resolve() if args.state_directory else log_dir / "state"
    execution_id = args.execution_id
    saved = state_dir / STATE_FILE
    if saved.exists():
        pending = json.loads(saved.read_text(encoding="utf-8")).get("executionId")
        if execution_id and execution_id != pending:
            raise InvalidInput(
                f"{state_dir} holds unfinished execution {pending}; pass --execution-id "
                f"{pending} to resume it, or remove {saved}"
            )
        execution_id = pending
    execution_id = execution_id or str(uuid.uuid4())
    exec_dir = log_dir / execution_id
    docs, params, problems, _ok = prepare(args, phases)
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        print(json.dumps({
            "executionId": execution_id, "status": "Invalid", "rebootRequested": False,
            "logDirectory": str(exec_dir), "problems": [p.to_dict() for p in problems],
            "documents": [],
        }, indent=2))  # fmt: skip
        return EXIT_INVALID
    if args.gate == "stdin" and not _gate_opened():
        print("vmbuild-agent: the gate stayed closed; nothing ran", file=sys.stderr)
        return EXIT_NOT_STARTED
    _keep_documents(exec_dir, docs, params)
    console = Console(exec_dir / "console.log", None if args.quiet else sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        engine = Engine(docs, params, phases, exec_dir, state_dir, execution_id, console)
        code = engine.run()
    finally:
        console.close()
    print(json.dumps(_summary(engine.report, exec_dir, code), indent=2))
    return code


def _gate_opened() -> bool:
    """Wait at the gate: one line `go` on standard input opens it; anything else or
    end of input keeps it closed. The caller starts the agent early (its start-up
    overlaps the guest's boot) and opens the gate once the guest is ready."""
    return sys.stdin.readline().strip() == "go"


def _terminate(signum: int, _frame: Any) -> None:
    # SIGTERM unwinds like Ctrl-C: the running step is killed, the report is written.
    raise KeyboardInterrupt(f"signal {signum}")


def _keep_documents(exec_dir: Path, docs: list[Document], params: list[dict]) -> None:
    """The documents and parameters as run, beside the logs (kept from the first run)."""
    folder = exec_dir / "documents"
    if folder.exists():
        return
    folder.mkdir(parents=True)
    for index, doc in enumerate(docs):
        shutil.copyfile(doc.path, folder / f"{index + 1:02d}-{Path(doc.path).name}")
    (folder / "parameters.json").write_text(
        json.dumps({d.path: p for d, p in zip(docs, params)}, indent=2) + "\n", encoding="utf-8"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmbuild-agent", description="Run AWSTOE-style component documents (schema 1.0)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--documents", required=True, help="comma-separated YAML/JSON documents")
        sub.add_argument("--parameters", help="name=value,name2=value2")
        sub.add_argument("--parameters-file", help='JSON: {"name": "value"} or per document')

    validate = verbs.add_parser("validate", help="check documents; nothing runs")
    common(validate)
    validate.add_argument("--phases", help="also check chaining against these phases")
    validate.add_argument("--json", action="store_true", help="JSON report on stdout")
    validate.set_defaults(func=cmd_validate)

    run = verbs.add_parser("run", help="run phases of documents")
    common(run)
    run.add_argument("--phases", default=",".join(PHASES), help="default: build,validate,test")
    run.add_argument("--log-directory", default="vmbuild-agent-logs")
    run.add_argument("--state-directory", help="default: <log-directory>/state")
    run.add_argument("--execution-id", help="default: a new UUID (or the pending one)")
    run.add_argument("--quiet", action="store_true", help="no live output on stderr")
    run.add_argument(
        "--gate", choices=["stdin"],
        help="load and check everything, then wait for a line 'go' on stdin before running",
    )  # fmt: skip
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InvalidInput as exc:
        print(f"vmbuild-agent: {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        if getattr(args, "json", False) or args.verb == "run":
            problems = [p.to_dict() for p in exc.problems] or [{"document": None, "phase": None,
                        "step": None, "line": None, "message": str(exc)}]  # fmt: skip
            print(json.dumps({"valid": False, "status": "Invalid", "problems": problems}, indent=2))
        return EXIT_INVALID
    except AgentError as exc:
        print(f"vmbuild-agent: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an agent bug must still end with a message and exit 1
        print(f"vmbuild-agent: internal error: {exc!r}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())


def _entry() -> None:
    """Zipapp entry point."""
    sys.exit(main())
