"""Which package mirror to bootstrap from: `--mirror`, `VMBUILD_MIRROR`, or the host's apt sources.

The host's own apt configuration is the source of truth, so no host name is
ever written into vmbuild: one-line `sources.list` files and deb822 `.sources`
files are read, and the URI whose suite is exactly the requested release (the
main archive, not `-security` or `-updates`) is chosen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vmbuild.errors import InputError

ENV_VAR = "VMBUILD_MIRROR"
_SCHEMES = ("http://", "https://", "file:/")


@dataclass(frozen=True)
class AptSource:
    """One `deb` entry of the host's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str  # file:line, for messages


def _one_line_entries(path: Path, text: str) -> Iterator[AptSource]:
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # options such as [arch=amd64 signed-by=...]
        words = line.split()
        if len(words) < 3 or words[0] != "deb":
            continue
        yield AptSource(words[1], (words[2],), tuple(words[3:]), f"{path}:{number}")


def _deb822_entries(path: Path, text: str) -> Iterator[AptSource]:
    stanza: dict[str, str] = {}
    start = 1
    key = ""

    def flush() -> Iterator[AptSource]:
        enabled = stanza.get("enabled", "yes").lower() != "no"
        if stanza and enabled and "deb" in stanza.get("types", "").split():
            for uri in stanza.get("uris", "").split():
                yield AptSource(
                    uri,
                    tuple(stanza.get("suites", "").split()),
                    tuple(stanza.get("components", "").split()),
                    f"{path}:{start}",
                )

    for number, raw in enumerate([*text.splitlines(), ""], 1):
        if raw.startswith("#"):
            continue
        if not raw.strip():
            yield from flush()
            stanza, key = {}, ""
            continue
        if raw[0] in " \t" and key:  # continuation line
            stanza[key] += " " + raw.strip()
            continue
        if ":" in raw:
            if not stanza:
                start = number
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            stanza[key] = value.strip()


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled `deb` entry, in the order apt reads them."""
    files: list[Path] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        files.append(main)
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    entries: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        parse = _deb822_entries if path.suffix == ".sources" else _one_line_entries
        entries += parse(path, text)
    return entries


def mirror_from_sources(release: str, sources: list[AptSource]) -> str | None:
    """The first URI that serves `release` itself (not `release-security`/`-updates`)."""
    for source in sources:
        if release in source.suites and source.uri.startswith(_SCHEMES):
            if "security" in source.uri.rstrip("/").rsplit("/", 1)[-1]:
                continue
            if source.components and "main" not in source.components:
                continue
            return source.uri.rstrip("/")
    return None


def resolve_mirror(
    release: str, override: str | None = None, *, etc_apt: Path = Path("/etc/apt")
) -> str:
    """The mirror URL: `override`, else $VMBUILD_MIRROR, else the host's apt sources."""
    chosen = override or os.environ.get(ENV_VAR)
    if chosen:
        if not chosen.startswith(_SCHEMES):
            raise InputError(
                f"mirror {chosen!r} is not an http://, https:// or file:/ URL",
                hint=f"pass --mirror URL or set {ENV_VAR}",
            )
        return chosen.rstrip("/")
    found = mirror_from_sources(release, host_sources(etc_apt))
    if not found:
        raise InputError(
            f"no apt source for {release!r} in {etc_apt}/sources.list or "
            f"{etc_apt}/sources.list.d/*.{{list,sources}}",
            hint=f"pass --mirror URL or set {ENV_VAR}",
        )
    return found
