#!/usr/bin/env bash
# Every test: the API suite against the source install, then the frozen binary is built and
# the same suite (plus the chroot tests) runs against it; the Slurm tests run against a real
# one-node cluster started here. Installs what it needs first (pip; apt-get as root).
set -euo pipefail
cd "$(dirname "$0")/.."

pip install --quiet '.[test]'
# the chroot test's root holds only a static busybox (Debian's busybox-static)
if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi

# munged wants every parent of its socket traversable: a fresh dir right under /tmp
cluster=$(mktemp -d /tmp/jobd-slurm-XXXXXX)
chmod 755 "$cluster"
trap 'scripts/slurm-test-cluster.sh down "$cluster"; rm -rf "$cluster"' EXIT
scripts/slurm-test-cluster.sh up "$cluster"
export SLURM_CONF="$cluster/slurm.conf"

pytest
scripts/build-binary.sh
JOBD_EXE="$PWD/dist/jobd" pytest
