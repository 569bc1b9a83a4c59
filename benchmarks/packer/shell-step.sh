#!/bin/bash
# The one shell step both builders run (Packer's shell provisioner, vmbuild's ExecuteBash):
# some file, CPU and disk work inside the guest, the same bytes whoever runs it.
set -euo pipefail
mkdir -p /opt/bench
head -c 16M /dev/zero | gzip -1 > /opt/bench/zeros.gz
dd if=/dev/urandom of=/opt/bench/blob bs=1M count=16 status=none
sha256sum /opt/bench/blob > /opt/bench/blob.sha256
sha256sum --check --quiet /opt/bench/blob.sha256
printf 'bench image, built %s\n' "$(date -u +%FT%TZ)" > /etc/bench-release
sync
