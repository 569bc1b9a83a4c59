"""Minimal cloud-init-ready base images built with the distribution's own tools.

`ensure_image(definition_path)` returns the cached qcow2 for a base-image
definition (`images/base/*.yml`), building it from the host's package mirror
the first time.
"""

from vmbuild.bootstrap.cache import BOOTSTRAP_VERSION, ensure_image, image_key, read_meta
from vmbuild.bootstrap.definition import Definition, load_definition
from vmbuild.bootstrap.mirror import resolve_mirror

__all__ = [
    "BOOTSTRAP_VERSION",
    "Definition",
    "ensure_image",
    "image_key",
    "load_definition",
    "read_meta",
    "resolve_mirror",
]
