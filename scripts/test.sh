#!/usr/bin/env bash
# Every test: the API suite against the source install, then the frozen binary is built and
# the same suite (plus the chroot and container tests) runs against it; the Slurm tests run
# against a real one-node cluster, the container tests against a Docker engine, both started
# here. Installs what it needs first (pip; apt-get as root).
set -euo pipefail
cd "$(dirname "$0")/.."

pip install --quiet '.[test]'
# the chroot test's root holds only a static busybox (Debian's busybox-static)
if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi
# the status page's browser test drives Debian's chromium through its chromedriver (as root)
if [ "$(id -u)" = 0 ] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# munged wants every parent of its socket traversable: a fresh dir right under /tmp
cluster=$(mktemp -d /tmp/jobd-slurm-XXXXXX)
chmod 755 "$cluster"
engine=$(mktemp -d /tmp/jobd-docker-XXXXXX)
trap 'scripts/slurm-test-cluster.sh down "$cluster"; rm -rf "$cluster";
      scripts/docker-test-engine.sh down "$engine"; rm -rf "$engine"' EXIT
scripts/slurm-test-cluster.sh up "$cluster"
export SLURM_CONF="$cluster/slurm.conf"

# the container tests (binary pass) need a Docker engine: one of our own, as root
if [ "$(id -u)" = 0 ] && scripts/docker-test-engine.sh up "$engine"; then
    export DOCKER_HOST="unix://$engine/docker.sock"
else
    echo "no Docker engine for the container tests (they need root); they will skip" >&2
fi

pytest
scripts/build-binary.sh
JOBD_EXE="$PWD/dist/jobd" pytest
