"""The recipe: what users write to build an image, as frozen dataclasses.

Values here are canonical: paths absolute (resolved against the recipe's folder),
memory in MiB, disk size in bytes, timeouts in seconds, closed choices as enums.
`vmbuild.config.load.load_recipe` turns a YAML file into a `Recipe`;
`Recipe.to_dict()`/`Recipe.from_dict()` are the JSON round-trip the manifest uses.
"""

# `setting()` returns a dataclasses.field (with docs and schema): not a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from vmbuild.config.model import Model, setting

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
SEMVER_PATTERN = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)
SHA256_PATTERN = r"^(sha256:)?[0-9a-fA-F]{64}$"
URL_PATTERN = r"^(https?|file)://"
SIZE = {"type": ["integer", "string"], "examples": ["8G", 8589934592]}
MEMORY = {"type": ["integer", "string"], "examples": ["2G", 2048]}
DURATION = {"type": ["integer", "string"], "examples": [600, "10m", "1h30m"]}
MIN_MEMORY_MIB = 256
MIN_DISK_SIZE = 64 * 1024**2


class Firmware(StrEnum):
    BIOS = "bios"
    UEFI = "uefi"


class Machine(StrEnum):
    PC = "pc"
    Q35 = "q35"


class Accelerator(StrEnum):
    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


class NetworkMode(StrEnum):
    USER = "user"
    LIBVIRT = "libvirt"


class Compression(StrEnum):
    ZSTD = "zstd"
    ZLIB = "zlib"
    NONE = "none"


class ParentKind(StrEnum):
    PATH = "path"
    URL = "url"
    BOOTSTRAP = "bootstrap"
    BUILD = "build"


@dataclass(frozen=True)
class Origin:
    """Where a value was written: for messages about it found later (agent checks)."""

    file: str
    line: int | None
    field: str


@dataclass(frozen=True)
class Parent(Model):
    """The image the build starts from: exactly one of path, url (+ sha256), bootstrap, build."""

    path: Path | None = setting(None, doc="a local image file (relative to the recipe)")
    url: str | None = setting(
        None,
        doc="an image to download (http, https or file URL); needs sha256",
        schema={"type": "string", "pattern": URL_PATTERN},
    )
    sha256: str | None = setting(
        None,
        doc="sha256 of the file at url (64 hex digits); downloads are cached by it",
        schema={"type": "string", "pattern": SHA256_PATTERN},
    )
    bootstrap: Path | None = setting(
        None, doc="a base-image definition (images/base/*.yml) vmbuild builds and caches"
    )
    build: Path | None = setting(
        None, doc="the folder of an earlier successful vmbuild build: its image is the parent"
    )

    SCHEMA_EXTRA: ClassVar[dict[str, Any]] = {
        "oneOf": [{"required": [k]} for k in ("path", "url", "bootstrap", "build")],
        "dependentRequired": {"url": ["sha256"], "sha256": ["url"]},
    }

    @property
    def kind(self) -> ParentKind:
        for kind in ParentKind:
            if getattr(self, kind.value) is not None:
                return kind
        raise ValueError("parent has no source")


@dataclass(frozen=True)
class Component(Model):
    """An AWSTOE-style component document and the parameters it runs with."""

    path: Path = setting(doc="the component document (relative to the recipe)")
    parameters: dict[str, str] = setting(
        factory=dict,
        doc="parameter values by name (numbers and booleans are turned into strings)",
        schema={
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
    )
    origin: Origin | None = setting(None, doc="where the recipe lists it", internal=True)


@dataclass(frozen=True)
class Network(Model):
    """Guest networking: QEMU user mode (ports forwarded to 127.0.0.1) or a libvirt network."""

    mode: NetworkMode = setting(
        NetworkMode.USER,
        doc="user: QEMU user mode, SSH forwarded from 127.0.0.1; libvirt: a libvirt network",
    )
    name: str | None = setting(
        None, doc="the libvirt network (mode libvirt only; default 'default')"
    )


@dataclass(frozen=True)
class VM(Model):
    """The build (and test) virtual machine."""

    cpus: int = setting(2, doc="virtual CPUs", schema={"type": "integer", "minimum": 1})
    memory: int = setting(
        2048, doc="memory in MiB, or a size string such as 2G or 2048M", schema=MEMORY
    )
    disk_size: int | None = setting(
        None,
        doc="grow the disk to this size (bytes or a size string such as 8G); default: parent's",
        schema=SIZE,
    )
    firmware: Firmware = setting(Firmware.BIOS, doc="bios (SeaBIOS) or uefi (OVMF)")
    machine: Machine = setting(Machine.PC, doc="QEMU machine type")
    accelerator: Accelerator = setting(
        Accelerator.AUTO, doc="auto: kvm when it works, else tcg (software emulation)"
    )
    uri: str = setting(
        "qemu:///system", doc="libvirt connection URI", schema={"type": "string", "minLength": 1}
    )
    network: Network = setting(factory=Network, doc="guest networking")


TIMEOUT_DEFAULTS = {"boot": 60, "ssh": 300, "cloud_init": 600, "shutdown": 180, "build": 3600}


def _timeout_doc(what: str, name: str) -> str:
    return f"{what} (default {TIMEOUT_DEFAULTS[name]} s, scaled up under TCG)"


@dataclass(frozen=True)
class Timeouts(Model):
    """Time limits in seconds (or 90s, 10m, 1h); unset ones take defaults scaled up under TCG."""

    boot: int | None = setting(
        None,
        doc=_timeout_doc(
            "longest the serial console may stay silent, once written to, before SSH answers "
            "(a stalled boot is tried once more); SSH must answer within boot + ssh",
            "boot",
        ),
        schema=DURATION,
    )
    ssh: int | None = setting(None, doc=_timeout_doc("until SSH answers", "ssh"), schema=DURATION)
    cloud_init: int | None = setting(
        None, doc=_timeout_doc("until cloud-init is done", "cloud_init"), schema=DURATION
    )
    shutdown: int | None = setting(
        None, doc=_timeout_doc("clean shutdown of the guest", "shutdown"), schema=DURATION
    )
    build: int | None = setting(
        None, doc=_timeout_doc("the build phase of all components", "build"), schema=DURATION
    )

    DEFAULTS: ClassVar[dict[str, int]] = TIMEOUT_DEFAULTS

    def resolved(self, scale: float = 1.0) -> dict[str, int]:
        """Every timeout in seconds: the recipe's value, else the default times `scale`."""
        values = self.to_dict()
        return {
            name: values[name] if values[name] is not None else int(default * scale)
            for name, default in self.DEFAULTS.items()
        }


@dataclass(frozen=True)
class Sanitize(Model):
    """What to remove from the guest before the snapshot; every group is on by default."""

    ssh_host_keys: bool = setting(True, doc="SSH host keys (regenerated on first boot)")
    authorized_keys: bool = setting(True, doc="the build's SSH authorized keys")
    build_user: bool = setting(True, doc="the temporary build user and its home")
    cloud_init: bool = setting(True, doc="cloud-init state, so it runs again on first boot")
    machine_id: bool = setting(True, doc="/etc/machine-id (emptied, regenerated on boot)")
    logs: bool = setting(True, doc="journal and /var/log contents")
    shell_history: bool = setting(True, doc="shell histories")
    tmp: bool = setting(True, doc="/tmp and /var/tmp")
    dhcp_leases: bool = setting(True, doc="DHCP client leases")
    extra_paths: tuple[str, ...] = setting(
        (),
        doc="more absolute guest paths to delete",
        schema={"type": "array", "items": {"type": "string", "pattern": "^/."}},
    )


@dataclass(frozen=True)
class Snapshot(Model):
    """How the built disk is flattened into the new image."""

    compression: Compression = setting(Compression.ZSTD, doc="qcow2 compression of the image")


@dataclass(frozen=True)
class ImageTest(Model):
    """The test phase: a fresh VM from the new image runs the components' test phases."""

    enabled: bool = setting(True, doc="run the test phase")
    timeout: int = setting(1800, doc="seconds (or 30m) for the whole test phase", schema=DURATION)


def _output_schema() -> dict[str, Any]:
    try:
        from vmbuild.formats import OUTPUT_SCHEMA  # type: ignore[attr-defined]
    except ImportError:  # vmbuild.formats not there yet: accept any mapping
        return {"type": "object"}
    return dict(OUTPUT_SCHEMA)


def _distribute_schema() -> dict[str, Any]:
    try:
        from vmbuild.stores import config_schema  # type: ignore[attr-defined]
    except ImportError:  # vmbuild.stores not there yet: any named, typed destination
        item: dict[str, Any] = {
            "type": "object",
            "required": ["type", "name"],
            "properties": {"type": {"type": "string"}, "name": {"type": "string"}},
        }
    else:
        item = config_schema()
    return {"type": "array", "items": item}


@dataclass(frozen=True)
class Recipe(Model):
    """A vmbuild recipe: the parent image, the components to run on it, and what to make of it."""

    name: str = setting(
        doc="image name: lowercase letters, digits and '-'",
        schema={"type": "string", "pattern": NAME_PATTERN},
    )
    version: str = setting(
        doc="semantic version, such as 1.0.0",
        schema={"type": "string", "pattern": SEMVER_PATTERN},
    )
    parent: Parent = setting(doc="the image the build starts from")
    description: str = setting("", doc="free text")
    components: tuple[Component, ...] = setting((), doc="component documents, run in this order")
    vm: VM = setting(factory=VM, doc="the build and test virtual machine")
    workdir: Path = setting(
        Path("work"), doc="where build folders go (default: work/ beside the recipe file)"
    )
    user_data: dict[str, Any] = setting(
        factory=dict, doc="extra cloud-init user-data merged into vmbuild's own"
    )
    timeouts: Timeouts = setting(factory=Timeouts, doc="time limits")
    sanitize: Sanitize = setting(factory=Sanitize, doc="cleanup before the snapshot")
    snapshot: Snapshot = setting(factory=Snapshot, doc="flattening the built disk")
    test: ImageTest = setting(factory=ImageTest, doc="testing the new image in a fresh VM")
    warm: bool = setting(True, doc="restore build VMs from a saved warm state when possible")
    output: dict[str, Any] = setting(
        factory=dict, doc="output formats and files", schema=_output_schema
    )
    distribute: list[dict[str, Any]] = setting(
        factory=list, doc="where to publish the image", schema=_distribute_schema
    )
    path: Path | None = setting(None, doc="the recipe file it was loaded from", internal=True)
