"""Loading a recipe file: YAML with line numbers, JSON Schema, then semantic checks.

Every problem is collected and reported at once (`recipe.yml:12: vm.memory: ...`),
as one `RecipeError` (an `InputError`, exit code 2). Nothing boots before this passes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import posixpath
import re
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from vmbuild.config import recipe as r
from vmbuild.config.problems import Problems
from vmbuild.config.schema import recipe_schema
from vmbuild.config.schema_errors import add_schema_problems
from vmbuild.config.units import MIB, parse_duration, parse_memory_mib, parse_size
from vmbuild.config.yamlpos import JsonPath, Positions, load_yaml
from vmbuild.errors import InputError

HINT = "`vmbuild schema` prints every recipe field; images/recipes/demo.yml is an example"

PATTERN_WORDS = {
    r.NAME_PATTERN: "must be lowercase letters, digits and '-' (not starting with '-')",
    r.SEMVER_PATTERN: "must be a semantic version such as 1.0.0",
    r.SHA256_PATTERN: "must be 64 hex digits (a sha256)",
    r.URL_PATTERN: "must be an http://, https:// or file:// URL",
    "^/.": "must be an absolute guest path",
}

# Deleting these would break the image: a typo in extra_paths must not do it.
PROTECTED_PATHS = {
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
    "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
}  # fmt: skip


def load_recipe(path: str | Path, *, check_components: bool = True) -> r.Recipe:
    """Load and fully check a recipe; raise `RecipeError` listing every problem.

    With `check_components`, each component document is also checked by the guest
    agent's own validator (building `dist/vmbuild-agent.pyz` if needed).
    """
    file = str(path)
    path = Path(path)
    problems = Problems(file)
    data, positions = _read(path, problems)
    bad = add_schema_problems(data, _validator(), positions, problems, pattern_words=PATTERN_WORDS)
    checker = _Checker(path, data, positions, problems, bad)
    canonical = checker.run()
    if check_components and checker.origins:
        from vmbuild.components import component_problems

        problems.extend(component_problems(checker.checkable_components()))
    problems.raise_if_any(HINT)
    loaded = r.Recipe.from_dict(canonical, path=path.absolute())
    components = tuple(
        dataclasses.replace(c, origin=o)
        for c, o in zip(loaded.components, checker.origins, strict=True)
    )
    return dataclasses.replace(loaded, components=components)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(recipe_schema())


def _read(path: Path, problems: Problems) -> tuple[dict[str, Any], Positions]:
    file = problems.file
    if not path.exists():
        raise InputError(f"{file}: recipe not found", hint="give the path of a recipe .yml file")
    if path.is_dir():
        raise InputError(f"{file}: is a folder, not a recipe file")
    try:
        data, positions, yaml_problems = load_yaml(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        problems.add(mark.line + 1 if mark else None, "", f"YAML syntax error: {what}")
        problems.raise_if_any()
        raise  # unreachable: raise_if_any raised
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: YAML error: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read: {exc}") from exc
    for problem in yaml_problems:
        problems.add(problem.line, problem.path, problem.message)
    if data is None:
        problems.add(1, "", "the file is empty; a recipe needs at least name, version and parent")
    elif not isinstance(data, dict):
        problems.add(positions.line(()), "", "the top level must be a mapping of fields")
    problems.raise_if_any(HINT)
    return data, positions


class _Checker:
    """Semantic checks that a schema cannot express; builds the canonical dict as it goes."""

    def __init__(
        self,
        path: Path,
        data: dict[str, Any],
        positions: Positions,
        problems: Problems,
        bad: set[JsonPath],
    ) -> None:
        self.base = path.absolute().parent
        self.data = data
        self.positions = positions
        self.problems = problems
        self.bad = bad
        self.origins: list[r.Origin] = []
        self.checkable: list[r.Component] = []

    # -- helpers ---------------------------------------------------------------------------

    def ok(self, path: JsonPath) -> bool:
        """The value at `path` passed the schema (so its type is the expected one)."""
        return not any(path[:end] in self.bad for end in range(len(path) + 1))

    def clean(self, path: JsonPath) -> bool:
        """Neither the value at `path` nor anything inside it failed the schema."""
        n = len(path)
        return self.ok(path) and not any(bad[:n] == path for bad in self.bad)

    def add(self, path: JsonPath, message: str) -> None:
        self.problems.add(self.positions.line(path), path, message)

    def resolve(self, value: str) -> Path:
        """Absolute and normalised, but symlinks kept: the path the user meant."""
        return Path(os.path.abspath(self.base / Path(value).expanduser()))

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return dict(value) if isinstance(value, dict) and self.ok((name,)) else {}

    def duration(self, path: JsonPath, value: Any) -> int | None:
        if value is None or not self.ok(path):
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.add(path, str(exc))
            return None
        if seconds <= 0:
            self.add(path, f"must be more than 0 seconds, got {value!r}")
            return None
        return seconds

    # -- sections --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        known = {f.name for f in dataclasses.fields(r.Recipe)}
        out = {k: v for k, v in self.data.items() if k in known}
        out["parent"] = self.parent()
        out["components"] = self.check_components()
        out["vm"] = self.vm()
        out["workdir"] = self.workdir()
        out["timeouts"] = {
            k: self.duration(("timeouts", k), v) for k, v in self.section("timeouts").items()
        }
        out["sanitize"] = self.sanitize()
        test = self.section("test")
        if "timeout" in test:
            test["timeout"] = self.duration(("test", "timeout"), test["timeout"])
        out["test"] = test
        self.output()
        self.distribute()
        return out

    def parent(self) -> dict[str, Any]:
        parent = self.section("parent")
        for key in ("path", "bootstrap"):
            if isinstance(parent.get(key), str) and self.ok(("parent", key)):
                resolved = self.resolve(parent[key])
                parent[key] = str(resolved)
                if resolved.is_dir():
                    self.add(("parent", key), f"{resolved} is a folder, not a file")
                elif not resolved.is_file():
                    self.add(("parent", key), f"no such file: {resolved}")
                elif key == "bootstrap":
                    self.base_image(resolved)
        if isinstance(parent.get("build"), str) and self.ok(("parent", "build")):
            resolved = self.resolve(parent["build"])
            parent["build"] = str(resolved)
            if not resolved.is_dir():
                self.add(("parent", "build"), f"no such build folder: {resolved}")
            elif not (resolved / "manifest.json").is_file():
                self.add(
                    ("parent", "build"),
                    f"{resolved} is not a vmbuild build folder (no manifest.json)",
                )
        if isinstance(parent.get("sha256"), str):
            parent["sha256"] = parent["sha256"].lower().removeprefix("sha256:")
        url = parent.get("url")
        if isinstance(url, str) and self.ok(("parent", "url")) and url.startswith("file:"):
            local = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
            if not local.is_file():
                self.add(("parent", "url"), f"no such file: {local}")
        return parent

    def base_image(self, definition: Path) -> None:
        """The base-image definition's own checks (its errors name its file and line)."""
        try:
            from vmbuild.bootstrap.definition import load_definition
        except ImportError:  # vmbuild.bootstrap not there yet
            return
        try:
            load_definition(definition)
        except InputError as exc:
            self.add(("parent", "bootstrap"), f"invalid base-image definition: {exc.message}")

    def check_components(self) -> list[dict[str, Any]]:
        items = self.data.get("components")
        if not isinstance(items, list) or not self.ok(("components",)):
            return []
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        out = []
        for i, item in enumerate(items):
            where: JsonPath = ("components", i)
            if not isinstance(item, dict) or not self.ok(where):
                continue
            component = dict(item)
            if isinstance(item.get("path"), str) and self.ok((*where, "path")):
                resolved = self.resolve(item["path"])
                component["path"] = str(resolved)
                if not resolved.is_file():
                    self.add((*where, "path"), f"no such file: {resolved}")
            params = item.get("parameters", {})
            # Not a mapping: the schema reported it; {} keeps the checks below simple.
            component["parameters"] = (
                {k: _param_text(v) for k, v in params.items()} if isinstance(params, dict) else {}
            )
            key = (
                str(component.get("path")),
                tuple(sorted(component.get("parameters", {}).items())),
            )
            if key in seen:
                self.add(where, f"same document and parameters as components[{seen[key]}]")
            seen.setdefault(key, i)
            out.append(component)
            origin = r.Origin(self.problems.file, self.positions.line(where), f"components[{i}]")
            self.origins.append(origin)
            document = Path(str(component.get("path")))
            if self.clean(where) and document.is_file():
                self.checkable.append(r.Component(document, component["parameters"], origin=origin))
        return out

    def checkable_components(self) -> list[r.Component]:
        """Well-formed components whose document exists, for the agent's validator."""
        return list(self.checkable)

    def vm(self) -> dict[str, Any]:
        vm = self.section("vm")
        if "memory" in vm and self.ok(("vm", "memory")):
            vm["memory"] = self.memory(vm["memory"])
        if "disk_size" in vm and self.ok(("vm", "disk_size")):
            vm["disk_size"] = self.disk_size(vm["disk_size"])
        uri = vm.get("uri")
        if isinstance(uri, str) and self.ok(("vm", "uri")) and ":/" not in uri:
            self.add(("vm", "uri"), f"not a libvirt URI (such as qemu:///system), got {uri!r}")
        network = vm.get("network")
        if isinstance(network, dict) and self.ok(("vm", "network")):
            network = dict(network)
            if network.get("mode") == r.NetworkMode.LIBVIRT:
                network.setdefault("name", "default")
            elif "name" in network:
                self.add(("vm", "network", "name"), "only used with mode: libvirt")
            vm["network"] = network
        return vm

    def memory(self, value: Any) -> int | None:
        try:
            mib = parse_memory_mib(value)
        except ValueError as exc:
            self.add(("vm", "memory"), str(exc))
            return None
        if mib < r.MIN_MEMORY_MIB:
            self.add(("vm", "memory"), f"must be at least {r.MIN_MEMORY_MIB} (MiB), got {mib}")
        return mib

    def disk_size(self, value: Any) -> int | None:
        try:
            size = parse_size(value)
        except ValueError as exc:
            self.add(("vm", "disk_size"), str(exc))
            return None
        if size < r.MIN_DISK_SIZE:
            self.add(
                ("vm", "disk_size"),
                f"must be at least {r.MIN_DISK_SIZE // MIB}M, got {value!r} ({size} bytes)",
            )
        return size

    def workdir(self) -> str:
        value = self.data.get("workdir")
        resolved = self.resolve(value if isinstance(value, str) else "work")
        if resolved.exists() and not resolved.is_dir():
            self.add(("workdir",), f"{resolved} exists and is not a folder")
        return str(resolved)

    def sanitize(self) -> dict[str, Any]:
        sanitize = self.section("sanitize")
        paths = sanitize.get("extra_paths")
        if isinstance(paths, list) and self.ok(("sanitize", "extra_paths")):
            for i, p in enumerate(paths):
                if isinstance(p, str) and posixpath.normpath(p) in PROTECTED_PATHS:
                    self.add(("sanitize", "extra_paths", i), f"refusing to delete {p}")
        return sanitize

    def output(self) -> None:
        """The formats module's own checks (such as compression only for qcow2)."""
        formats = self.section("output").get("formats")
        if not isinstance(formats, list) or not self.clean(("output",)):
            return
        try:
            from vmbuild.formats import parse_formats  # type: ignore[attr-defined]
        except ImportError:  # vmbuild.formats not there yet
            return
        try:
            parse_formats(formats, "output.formats")
        except InputError as exc:
            # `output.formats[1].compression: message`: keep the field, find its line.
            match = re.match(r"^output\.formats\[(\d+)\]((?:\.\w+)*): (.*)$", exc.message, re.S)
            if not match:
                self.add(("output", "formats"), exc.message)
                return
            index, rest, message = match.groups()
            path: JsonPath = ("output", "formats", int(index), *rest.split(".")[1:])
            self.add(path, message + (f" ({exc.hint})" if exc.hint else ""))

    def distribute(self) -> None:
        items = self.data.get("distribute")
        if not isinstance(items, list) or not self.ok(("distribute",)):
            return
        names: dict[str, int] = {}
        for i, item in enumerate(items):
            where: JsonPath = ("distribute", i)
            if not isinstance(item, dict) or not self.ok(where):
                continue
            name = item.get("name")
            if isinstance(name, str):
                if name in names:
                    self.add(
                        (*where, "name"),
                        f"duplicate name {name!r} (also distribute[{names[name]}])",
                    )
                names.setdefault(name, i)
            if self.clean(where):
                self.store(where, item)
                self.store_paths(item)

    def store_paths(self, item: dict[str, Any]) -> None:
        """Resolve the store's host-side file fields against the recipe's folder."""
        try:
            from vmbuild.stores import registry
        except ImportError:
            return
        cls = registry().get(str(item.get("type")))
        for field in getattr(cls, "LOCAL_PATHS", ()):
            if isinstance(item.get(field), str) and not item[field].startswith("~"):
                item[field] = str(self.resolve(item[field]))

    def store(self, where: JsonPath, item: dict[str, Any]) -> None:
        """The store module's own checks, beyond its schema."""
        try:
            from vmbuild.stores import load  # type: ignore[attr-defined]
        except ImportError:  # vmbuild.stores not there yet
            return
        label = f"distribute[{where[1]}]"
        try:
            load(item, label)
        except InputError as exc:
            # The store names the item as `distribute[1] (name: x): field: ...`; we add the line.
            message = re.sub(r"^ \(name: [^)]*\)", "", exc.message.removeprefix(label))
            message = message.removeprefix(": ") + (f" ({exc.hint})" if exc.hint else "")
            self.add(where, message)


def _param_text(value: Any) -> str:
    """Parameters are strings; YAML may have read `8080` or `true` as something else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
