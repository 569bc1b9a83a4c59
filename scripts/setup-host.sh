#!/usr/bin/env bash
# Set up a Debian 12 build host for vmbuild: system packages, libvirtd, and the Python venv.
# Idempotent: installs only what is missing and starts daemons only if they are not running.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc
  debootstrap extlinux syslinux-common e2fsprogs parted ovmf zstd
  openssh-server openssh-client docker-registry packer tini
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Without udev (containers) /dev/kvm stays root:root 0600; libvirt then finds KVM "not
# usable" by its QEMU user and re-probes QEMU on every domain start (a minute each under load).
if [ -e /dev/kvm ] && [ "$(id -u)" -eq 0 ] && getent group kvm >/dev/null \
   && [ "$(stat -c %G:%a /dev/kvm)" != "kvm:660" ]; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

# libvirtd (and virtlogd) as root; under systemd use the units, else start the daemons directly.
if ! virsh -c qemu:///system version >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start virtlogd libvirtd
  else
    pgrep -x virtlogd >/dev/null || virtlogd -d
    # libvirtd daemonizes each QEMU, so an exited QEMU is reaped by PID 1; a container's
    # init may do that late, and libvirtd waits for the zombie on every VM stop (1.6 s
    # measured here). tini -s adopts those orphans as subreaper and reaps them at once.
    if ! pgrep -x libvirtd >/dev/null; then
      setsid tini -s -- libvirtd </dev/null >>/var/log/libvirt/libvirtd-stdio.log 2>&1 &
    fi
  fi
  for _ in $(seq 1 30); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
fi
virsh -c qemu:///system version >/dev/null
# A libvirtd started otherwise, without systemd as PID 1 or tini as its parent, leaves
# exited QEMUs to PID 1 to reap: say so, as every VM stop may then wait for it.
if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ] && pid=$(pgrep -xo libvirtd); then
  parent=$(ps -o comm= -p "$(ps -o ppid= -p "$pid" | tr -d ' ')" 2>/dev/null || true)
  if [ "$parent" != tini ]; then
    echo "setup: note: libvirtd (pid $pid) has no reaping parent; each VM stop may wait" \
         "for PID 1 to reap QEMU. To restart it under tini: pkill -x libvirtd; make setup" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import vmbuild, libvirt, paramiko, pycdlib, pytest, moto" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
echo "setup: ok"
