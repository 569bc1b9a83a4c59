"""Distributions that can be bootstrapped: one module each behind `Distribution`.

The base class owns the shared flow (install, configure, clean); a subclass
fills in the distribution-specific hooks. Modules in this package register
themselves by subclassing; `get_distribution(name)` finds them.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from vmbuild import events
from vmbuild.bootstrap.definition import Definition
from vmbuild.errors import InputError

_registry: dict[str, type[Distribution]] = {}


class Distribution(ABC):
    """Builds a root file system tree for one distribution."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "name", None):
            _registry[cls.name] = cls

    def __init__(self, definition: Definition, mirror: str) -> None:
        self.definition = definition
        self.mirror = mirror

    def build_root(self, root: Path, *, package_cache: Path, fs_uuid: str) -> None:
        """Install packages into `root`, then configure and clean it for a first boot."""
        with events.stage("bootstrap-install", f"Installing {self.definition.name} packages"):
            self.install(root, package_cache)
        with events.stage("bootstrap-configure", "Configuring the root file system"):
            self.configure(root, fs_uuid)
        with events.stage("bootstrap-initramfs", "Building the initramfs"):
            self.build_initramfs(root)
        self.clean(root)

    @abstractmethod
    def install(self, root: Path, package_cache: Path) -> None:
        """Install the base system and the definition's packages into `root`."""

    @abstractmethod
    def configure(self, root: Path, fs_uuid: str) -> None:
        """fstab, hostname, machine-id, SSH, networking, cloud-init, services."""

    @abstractmethod
    def build_initramfs(self, root: Path) -> None:
        """(Re)build the initramfs with the definition's modules."""

    @abstractmethod
    def clean(self, root: Path) -> None:
        """Drop caches, logs and per-machine state that must not be baked in."""

    @abstractmethod
    def kernel_paths(self, root: Path) -> tuple[str, str]:
        """Kernel and initramfs paths as the boot loader sees them (absolute in `root`)."""


def get_distribution(definition: Definition, mirror: str) -> Distribution:
    """The `Distribution` for `definition.distribution`."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    try:
        cls = _registry[definition.distribution]
    except KeyError:
        raise InputError(
            f"{definition.path}: distribution {definition.distribution!r} is not supported",
            hint=f"supported: {', '.join(sorted(_registry))}",
        ) from None
    return cls(definition, mirror)
