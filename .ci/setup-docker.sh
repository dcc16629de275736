#!/usr/bin/env bash
# System set-up for jdkit's Docker tests. Idempotent; run as root on a clean
# Debian bookworm machine (CI does) or again on a prepared one (quick).
#
#   1. apt: docker.io, debootstrap, postgresql (the last for other tests)
#   2. dockerd in the background when /var/run/docker.sock does not answer
#      (log: $JDKIT_DOCKERD_LOG, default /var/log/jdkit-dockerd.log)
#   3. base images from scratch with debootstrap + docker import
#      (docker/base/build-rootfs.sh; skipped when up to date)
#   4. the top images jdkit/postgres:15 and jdkit/jd:dev, when a Python that
#      can import jdkit and aiodocker is at hand ($PYTHON, else the
#      checkout's .venv, else python3);
#      otherwise the tests build them on first use (scripts/docker_images.py)
#
# No container registry is used anywhere: the machine may have none.
set -Eeuo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[setup-docker] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root"
start=$SECONDS

# -- 1. packages
packages=(docker.io debootstrap postgresql)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "packages already installed"
fi

# -- 2. the engine
if ! docker info >/dev/null 2>&1; then
    dockerd_log="${JDKIT_DOCKERD_LOG:-/var/log/jdkit-dockerd.log}"
    log "starting dockerd (log: $dockerd_log)"
    # A dockerd that was killed leaves its pid file; a live one answers above.
    if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    setsid nohup dockerd >>"$dockerd_log" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 30 "$dockerd_log" >&2 || true
        die "dockerd did not answer within 60s"
    fi
fi
log "engine: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"

# -- 3. base images (in parallel: mostly downloads)
pids=()
while read -r tag _; do
    bash "$root/docker/base/build-rootfs.sh" "$tag" &
    pids+=($!)
done < <(awk '!/^[[:space:]]*(#|$)/ { print $1 }' "$root/docker/base/rootfs.list")
failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
((failed == 0)) || die "building a base image failed (see above)"

# -- 4. top images, through the same code the tests use
python=""
for candidate in ${PYTHON:-} "$root/.venv/bin/python" python3; do
    if PYTHONPATH="$root" "$candidate" -c 'import aiodocker, jdkit._providers._docker' \
            >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [[ -n "$python" ]]; then
    PYTHONPATH="$root" "$python" "$root/scripts/docker_images.py"
else
    log "no Python with jdkit and aiodocker (set PYTHON=...); the tests will build"
    log "jdkit/postgres:15 and jdkit/jd:dev on first use"
fi
log "done in $((SECONDS - start))s"
