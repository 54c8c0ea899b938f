#!/usr/bin/env bash
# Start a private Docker engine for the docker-marked tests and import a busybox image.
#
# Idempotent, for a fresh Debian machine as root: installs docker.io and busybox-static when
# missing, starts dockerd on its own socket (so it never collides with a system engine), builds
# capacity-busybox:latest from a local root filesystem (no registry is reachable) and prints the
# line to eval: `eval "$(bash .ci/docker-setup.sh)"` exports DOCKER_HOST.
set -euo pipefail

STATE_DIR="${CAPACITY_DOCKER_STATE:-/var/lib/capacity-docker}"
SOCK="${CAPACITY_DOCKER_SOCK:-/var/run/capacity-docker.sock}"
PIDFILE="$STATE_DIR/dockerd.pid"
LOG="$STATE_DIR/dockerd.log"
IMAGE="capacity-busybox:latest"
export DOCKER_HOST="unix://$SOCK"

log() { echo "docker-setup: $*" >&2; }

need_install=()
command -v dockerd >/dev/null 2>&1 || need_install+=(docker.io)
[ -x /bin/busybox ] || need_install+=(busybox-static)
if [ "${#need_install[@]}" -gt 0 ]; then
    log "installing ${need_install[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${need_install[@]}" >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends "${need_install[@]}" >&2
    fi
fi
# docker.io's client; a different `docker` earlier on PATH would do as well.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker)"

mkdir -p "$STATE_DIR/data" "$STATE_DIR/exec"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
    && "$DOCKER" version >/dev/null 2>&1; then
    log "dockerd already running (pid $(cat "$PIDFILE"))"
else
    rm -f "$PIDFILE"
    log "starting dockerd on $SOCK (log: $LOG)"
    # The iptables FORWARD policy is restored by docker-teardown.sh from this copy.
    if command -v iptables >/dev/null 2>&1 && [ ! -f "$STATE_DIR/forward-policy" ]; then
        iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}' >"$STATE_DIR/forward-policy" || true
    fi
    nohup dockerd --host "unix://$SOCK" --data-root "$STATE_DIR/data" \
        --exec-root "$STATE_DIR/exec" --pidfile "$PIDFILE" >>"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 150); do
        "$DOCKER" version >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! "$DOCKER" version >/dev/null 2>&1; then
        log "dockerd did not answer on $SOCK within 30 s; last log lines:"
        tail -n 20 "$LOG" >&2
        exit 1
    fi
fi

if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    log "importing $IMAGE from a local busybox root filesystem"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs"/{bin,dev,etc,proc,sys,tmp,dev/shm}
    chmod 1777 "$rootfs/tmp"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $("$rootfs/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
    echo 'root:x:0:' >"$rootfs/etc/group"
    tar -C "$rootfs" -c . | "$DOCKER" import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >&2
fi

echo "export DOCKER_HOST=$DOCKER_HOST"
