# The jobd image: the one binary, an empty /tmp and /data, nothing else (like the Go jobd's).
# Users copy /jobd into their own research image (see Dockerfile.multistage).
#   scripts/build-binary.sh && docker build -t jobd .
# scripts/build-binary.sh leaves the image's files in dist/rootfs-<arch>/; the release builds
# each architecture's on its own runner, and a multi-platform build picks them by TARGETARCH
# (BuildKit sets it; the classic builder takes the default, or --build-arg TARGETARCH=arm64).
FROM scratch
ARG TARGETARCH=amd64
COPY dist/rootfs-${TARGETARCH}/ /
# The binary unpacks itself into TMPDIR at each start: it must be writable and allow exec.
ENV TMPDIR=/tmp \
    JOBD_DATA_DIR=/data
EXPOSE 8080
# no curl in a scratch image: the binary checks itself
HEALTHCHECK --interval=30s --timeout=5s CMD ["/jobd", "health"]
ENTRYPOINT ["/jobd"]
