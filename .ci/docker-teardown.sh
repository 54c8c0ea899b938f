#!/usr/bin/env bash
# Stop the private Docker engine that docker-setup.sh started and undo its host changes.
#
# Stops dockerd by its pid (never by name: another engine may be running), removes the docker0
# bridge it created and restores the iptables FORWARD policy that dockerd set to DROP.
set -uo pipefail

STATE_DIR="${CAPACITY_DOCKER_STATE:-/var/lib/capacity-docker}"
SOCK="${CAPACITY_DOCKER_SOCK:-/var/run/capacity-docker.sock}"
PIDFILE="$STATE_DIR/dockerd.pid"

log() { echo "docker-teardown: $*" >&2; }

if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
        DOCKER=/usr/bin/docker
        [ -x "$DOCKER" ] || DOCKER="$(command -v docker || true)"
        if [ -n "$DOCKER" ]; then
            ids="$(DOCKER_HOST="unix://$SOCK" "$DOCKER" ps -aq --filter label=capacity-test 2>/dev/null || true)"
            [ -z "$ids" ] || DOCKER_HOST="unix://$SOCK" "$DOCKER" rm -f $ids >/dev/null 2>&1 || true
        fi
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd still alive after 20 s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
fi
rm -f "$SOCK"

if ip link show docker0 >/dev/null 2>&1; then
    ip link delete docker0 2>/dev/null || log "could not remove docker0"
fi
if command -v iptables >/dev/null 2>&1; then
    policy="ACCEPT"
    [ -s "$STATE_DIR/forward-policy" ] && policy="$(cat "$STATE_DIR/forward-policy")"
    iptables -P FORWARD "$policy" 2>/dev/null || true
    rm -f "$STATE_DIR/forward-policy"
fi
exit 0
