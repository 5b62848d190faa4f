#!/usr/bin/env bash
# A Docker engine for jobd's container tests, entirely under DIR, on this machine, plus the
# local base images the tests build on (no registry is needed or used).
#   scripts/docker-test-engine.sh up DIR     install if missing, start dockerd with its own
#                                            data root and socket, make the base images,
#                                            print DOCKER_HOST=... (also in DIR/env)
#   scripts/docker-test-engine.sh down DIR   remove its containers, stop exactly the dockerd
#                                            it started (by its PID file)
# Needs root. Containers use --network host: the engine runs without a bridge or iptables.
# Base images: jobd-test/bullseye (debootstrap --variant=minbase: glibc 2.31, no Python) and
# jobd-test/busybox (a static busybox and nothing else: no libc at all).
set -euo pipefail

cmd=${1:?usage: $0 up|down DIR}
dir=$(realpath -m "${2:?usage: $0 up|down DIR}")
export DOCKER_HOST="unix://$dir/docker.sock"

down() {
    if [ -S "$dir/docker.sock" ]; then
        ids=$(docker ps -aq 2>/dev/null || true)
        [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    fi
    [ -f "$dir/dockerd.pid" ] || return 0
    pid=$(cat "$dir/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$dir/dockerd.pid"
    # what dockerd leaves mounted under its exec root (its network namespace file)
    awk -v dir="$dir/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r mount; do umount -l "$mount" || true; done
}

install() {
    command -v dockerd >/dev/null && command -v docker >/dev/null \
        && command -v debootstrap >/dev/null && dpkg -s busybox-static >/dev/null 2>&1 \
        && return 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io debootstrap busybox-static >/dev/null
}

bases() {
    if ! docker image inspect jobd-test/bullseye >/dev/null 2>&1; then
        [ -x "$dir/bullseye/bin/sh" ] || debootstrap --variant=minbase bullseye \
            "$dir/bullseye" http://deb.debian.org/debian >"$dir/debootstrap.log" 2>&1
        tar -C "$dir/bullseye" -c . | docker import - jobd-test/bullseye >/dev/null
    fi
    if ! docker image inspect jobd-test/busybox >/dev/null 2>&1; then
        rm -rf "$dir/busybox" && mkdir -p "$dir/busybox/bin" "$dir/busybox/tmp"
        chmod 1777 "$dir/busybox/tmp"
        cp /bin/busybox "$dir/busybox/bin/busybox"
        for tool in sh echo cat ls sleep; do ln -s busybox "$dir/busybox/bin/$tool"; done
        tar -C "$dir/busybox" -c . | docker import - jobd-test/busybox >/dev/null
    fi
}

up() {
    install
    down
    mkdir -p "$dir"
    dockerd --data-root "$dir/root" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        --host "$DOCKER_HOST" --storage-driver vfs --iptables=false --ip6tables=false \
        --bridge=none >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 300); do
        docker version >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! docker version >/dev/null 2>&1; then
        echo "dockerd did not start; its log:" >&2
        tail -20 "$dir/dockerd.log" >&2
        down
        exit 1
    fi
    bases
    echo "DOCKER_HOST=$DOCKER_HOST" | tee "$dir/env"
}

case $cmd in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
