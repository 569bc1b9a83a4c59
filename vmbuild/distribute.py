"""Distribution of a finished build to its stores: plan, preflight, publish, record.

`distribute()` reads the build folder (manifest.json and outputs/), loads the
targets (the recipe's `distribute` section, or a list given by the caller), checks
every store before uploading anything, publishes each, and appends the results to
the manifest's `distributions` (rewriting manifest.json atomically after each store).
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild import events, stores
from vmbuild.errors import BuildError, InputError, VmbuildError
from vmbuild.fsutil import write_json
from vmbuild.stores import ImageRef, LocalFile, Store


@dataclass(frozen=True)
class Build:
    """A build folder as the pipeline left it."""

    root: Path
    manifest: dict[str, Any]
    image: ImageRef
    files: list[LocalFile]

    @property
    def targets(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("recipe", {}).get("distribute") or [])


def load_build(build_dir: Path) -> Build:
    """Read BUILD_DIR/manifest.json and check every output it lists is there, at its size."""
    build_dir = Path(build_dir)
    path = build_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            f"{path}: no manifest; is {build_dir} a build folder?",
            hint="pass the folder a `vmbuild run` wrote (it holds manifest.json and outputs/)",
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    for key in ("name", "version", "build_id", "outputs"):
        if key not in manifest:
            raise InputError(f"{path}: field {key!r} is missing")
    files = []
    for i, out in enumerate(manifest["outputs"]):
        try:
            file = LocalFile(
                Path(out["path"]) if Path(out["path"]).is_absolute() else build_dir / out["path"],
                out["format"],
                out["sha256"],
                int(out["size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: outputs[{i}]: bad entry ({exc})") from None
        if not file.path.is_file():
            raise InputError(f"{path}: outputs[{i}]: {file.path} is missing")
        if file.path.stat().st_size != file.size:
            raise InputError(
                f"{path}: outputs[{i}]: {file.path} is {file.path.stat().st_size} bytes, "
                f"the manifest says {file.size}; the output changed after the build"
            )
        files.append(file)
    image = ImageRef(str(manifest["name"]), str(manifest["version"]), str(manifest["build_id"]))
    return Build(build_dir, manifest, image, files)


def load_targets(targets: list[dict[str, Any]], where: str = "distribute") -> list[Store]:
    """Stores for a `distribute` list; names must be unique."""
    if not isinstance(targets, list):
        raise InputError(f"{where}: expected a list of stores")
    loaded: list[Store] = []
    seen: set[str] = set()
    for i, target in enumerate(targets):
        store = stores.load(target, f"{where}[{i}]")
        if store.name in seen:
            raise InputError(f"{store.where}: name: {store.name!r} is used twice")
        seen.add(store.name)
        loaded.append(store)
    return loaded


def _record(build: Build, results: list[dict[str, Any]]) -> None:
    manifest = json.loads((build.root / "manifest.json").read_text())
    manifest.setdefault("distributions", []).extend(results)
    write_json(build.root / "manifest.json", manifest)


def distribute(
    build_dir: Path,
    targets: list[dict[str, Any]] | None = None,
    *,
    only: list[str] | None = None,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Publish a build's outputs to its stores; returns one result per store.

    `targets` defaults to the recipe's `distribute` section; `only` keeps the
    stores with those names. With `dry_run` nothing is contacted or written: the
    results say what would go where.
    """
    build = load_build(Path(build_dir))
    where = "distribute"
    chosen = load_targets(build.targets if targets is None else targets, where)
    if only:
        known = {s.name for s in chosen}
        missing = [n for n in only if n not in known]
        if missing:
            raise InputError(
                f"no store named {missing[0]!r} in the distribute list",
                hint=f"known: {', '.join(sorted(known)) or 'none'}",
            )
        chosen = [s for s in chosen if s.name in only]
    if not chosen:
        events.info("nothing to distribute: no stores configured")
        return []
    # Select formats for every store first: a bad `formats` entry fails before any upload.
    selections = [(store, store.select(build.files)) for store in chosen]
    if dry_run:
        return [store.plan(files, build.image) for store, files in selections]

    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        for store, _ in selections:
            stack.callback(store.close)
        with events.stage("distribute-check", "Checking stores"):
            for store, _ in selections:
                _guarded(store, store.check)
        for store, files in selections:
            with events.stage(f"distribute:{store.name}", f"Distributing to {store.name}") as end:
                started = time.time()
                result = _guarded(store, lambda s=store, f=files: s.publish(f, build.image))
                result["time"] = started
                result["seconds"] = round(time.time() - started, 3)
                end.update(verified=result["verified"], skipped=result["skipped"])
            events.result(f"{store.name}: {result['location']}", **result)
            _record(build, [result])
            results.append(result)
    return results


def _guarded(store: Store, fn: Any) -> Any:
    """Run a store call; unexpected exceptions become a BuildError naming the store."""
    try:
        return fn()
    except VmbuildError:
        raise
    except Exception as exc:
        raise BuildError(f"{store.where}: {type(exc).__name__}: {exc}") from exc
