#!/usr/bin/env bash
# Every test: the API suite against the source install, then the frozen binary is built and
# the same suite (plus the chroot tests) runs against it. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

pip install --quiet '.[test]'
# the chroot test's root holds only a static busybox (Debian's busybox-static)
if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi

pytest
scripts/build-binary.sh
JOBD_EXE="$PWD/dist/jobd" pytest
