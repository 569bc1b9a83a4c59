"""vmbuild: build, test and distribute VM images on local hardware with QEMU/KVM under libvirt."""

__version__ = "0.1.0"
