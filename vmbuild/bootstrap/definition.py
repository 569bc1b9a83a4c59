"""Base-image definitions (YAML): schema check with file:line:field errors, typed model.

A definition says which distribution, release and packages go into the image,
how the disk is laid out and booted, and the first-boot tweaks (masked units,
cloud-init settings) that make it fast under TCG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from vmbuild.errors import InputError

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+:@-]*$"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["distribution", "release", "packages"],
    "properties": {
        "name": _NAME,
        "description": {"type": "string"},
        "distribution": {"type": "string", "enum": ["debian"]},
        "release": _NAME,
        "architecture": {"type": "string", "enum": ["amd64"]},
        "variant": {"type": "string", "enum": ["minbase"]},
        "packages": {"type": "array", "items": _NAME, "minItems": 1, "uniqueItems": True},
        "hostname": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
        "disk": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "size": {"type": ["string", "integer"]},
                "filesystem": {"type": "string", "enum": ["ext4"]},
                "label": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,16}$"},
                "partition_table": {"type": "string", "enum": ["mbr"]},
            },
        },
        "bootloader": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "enum": ["extlinux"]},
                "timeout": {"type": "integer", "minimum": 0, "maximum": 600},
                "kernel_cmdline": {"type": "string"},
            },
        },
        "initramfs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "modules": {"type": "array", "items": _NAME, "uniqueItems": True},
                "compress": {"type": "string", "enum": ["gzip", "lz4", "zstd", "xz", "cat"]},
            },
        },
        "services": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mask": {"type": "array", "items": _NAME, "uniqueItems": True},
                "disable": {"type": "array", "items": _NAME, "uniqueItems": True},
                "enable": {"type": "array", "items": _NAME, "uniqueItems": True},
            },
        },
        "files": {
            "description": "extra files written into the image: absolute path -> content",
            "type": "object",
            "propertyNames": {"pattern": "^/"},
            "additionalProperties": {"type": "string"},
        },
        "cloud_init": {
            "description": "written as /etc/cloud/cloud.cfg.d/90-vmbuild.cfg",
            "type": "object",
        },
    },
}

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str | int) -> int:
    """Bytes from an integer or a size such as `4G`, `4GiB`, `512M`."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", value, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 4G or 512M)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


@dataclass(frozen=True)
class Definition:
    """A validated base-image definition; `data` is the canonical content for cache keys."""

    path: Path
    data: dict[str, Any]
    distribution: str
    release: str
    architecture: str
    packages: tuple[str, ...]
    disk_size: int
    filesystem: str
    fs_label: str
    hostname: str
    kernel_cmdline: str
    boot_timeout: int
    initramfs_modules: tuple[str, ...]
    initramfs_compress: str
    mask_units: tuple[str, ...]
    disable_units: tuple[str, ...]
    enable_units: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)
    cloud_init: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.data.get("name") or f"{self.distribution}-{self.release}")


def _node_at(node: yaml.Node, path: list[Any]) -> yaml.Node:
    """The deepest YAML node along a JSON path (for its line number)."""
    for key in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    node = v
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _field_name(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fail(path: Path, node: yaml.Node | None, field_path: list[Any], message: str) -> InputError:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return InputError(
        f"{path}{line}: {_field_name(field_path)}: {message}",
        hint="see images/base/debian-12.yml for a complete definition",
    )


def load_definition(path: str | Path) -> Definition:
    """Read and validate a definition; InputError names the file, line and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read definition: {exc.strerror}") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{where}: not valid YAML: {exc}") from exc
    if root is None or not isinstance(data, dict):
        raise _fail(path, root, [], "the definition must be a mapping")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.message))
    if errors:
        error = errors[0]
        field_path = list(error.absolute_path)
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            field_path += extra[:1]
            message = f"unknown field (allowed: {', '.join(sorted(error.schema['properties']))})"
        elif error.validator == "required":
            message = error.message
        else:
            message = error.message
        raise _fail(path, _node_at(root, field_path), field_path, message)

    disk = data.get("disk", {})
    boot = data.get("bootloader", {})
    initramfs = data.get("initramfs", {})
    services = data.get("services", {})
    try:
        size = parse_size(disk.get("size", "4G"))
    except ValueError as exc:
        raise _fail(path, _node_at(root, ["disk", "size"]), ["disk", "size"], str(exc)) from exc
    if size < 512 << 20:
        raise _fail(path, _node_at(root, ["disk", "size"]), ["disk", "size"], "at least 512M")
    return Definition(
        path=path,
        data=data,
        distribution=data["distribution"],
        release=data["release"],
        architecture=data.get("architecture", "amd64"),
        packages=tuple(data["packages"]),
        disk_size=size,
        filesystem=disk.get("filesystem", "ext4"),
        fs_label=disk.get("label", "root"),
        hostname=data.get("hostname", "localhost"),
        kernel_cmdline=boot.get("kernel_cmdline", "console=ttyS0"),
        boot_timeout=boot.get("timeout", 1),
        initramfs_modules=tuple(initramfs.get("modules", ())),
        initramfs_compress=initramfs.get("compress", "zstd"),
        mask_units=tuple(services.get("mask", ())),
        disable_units=tuple(services.get("disable", ())),
        enable_units=tuple(services.get("enable", ())),
        files=dict(data.get("files", {})),
        cloud_init=dict(data.get("cloud_init", {})),
    )
