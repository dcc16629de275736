#!/usr/bin/env bash
# Build a Debian base image from scratch: debootstrap a minimal root file
# system with the packages listed for TAG in rootfs.list, then `docker import`
# it. No container registry is needed, and the packages are installed on the
# host side, so later `docker build`s on top need no network either.
#
#   build-rootfs.sh [--force] TAG...     build the listed images (when missing)
#   build-rootfs.sh [--force] --all      build every image in rootfs.list
#   build-rootfs.sh --spec-hash TAG      print the hash that labels TAG's image
#
# An image is skipped when its tag exists with the label
# jdkit.rootfs.spec=<hash of its rootfs.list line and of this script>, so a
# changed package list or a changed script rebuilds it. Needs root,
# debootstrap and a running Docker engine. Mirror: $JDKIT_DEBIAN_MIRROR, else
# the first one apt is configured with for the suite, else deb.debian.org.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list="$here/rootfs.list"
self="$here/$(basename "${BASH_SOURCE[0]}")"

log() { printf '[build-rootfs] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# "TAG SUITE PACKAGES" for TAG, fields separated by one space.
spec_line() {
    awk -v tag="$1" '!/^[[:space:]]*(#|$)/ && $1 == tag { print $1, $2, $3; found=1; exit }
        END { if (!found) exit 1 }' "$list"
}

spec_hash() {
    { printf '%s\n' "$1"; cat "$self"; } | sha256sum | cut -c1-16
}

detect_mirror() {
    local suite="$1" uri=""
    if [[ -n "${JDKIT_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "$JDKIT_DEBIAN_MIRROR"
        return
    fi
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        # deb822 stanzas: the first "Types: deb" stanza that lists the suite.
        uri="$(awk -v suite="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[[:space:]]*#/) continue
                    if (line ~ /^Types:/ && line ~ /[[:space:]]deb([[:space:]]|$)/) deb = 1
                    if (line ~ /^URIs:/) { sub(/^URIs:[[:space:]]*/, "", line); split(line, a, /[[:space:]]+/); uri = a[1] }
                    if (line ~ /^Suites:/) {
                        sub(/^Suites:[[:space:]]*/, "", line)
                        n = split(line, s, /[[:space:]]+/)
                        for (j = 1; j <= n; j++) if (s[j] == suite) ok = 1
                    }
                }
                if (ok && deb && uri != "") { print uri; exit }
            }' /etc/apt/sources.list.d/debian.sources)"
    fi
    if [[ -z "$uri" && -r /etc/apt/sources.list ]]; then
        uri="$(awk -v suite="$suite" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

image_spec_label() {
    docker image inspect --format '{{ index .Config.Labels "jdkit.rootfs.spec" }}' "$1" 2>/dev/null || true
}

unmount_under() {
    local dir="$1" m
    # Deepest first; debootstrap mounts /proc and /sys in the target while it runs.
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

build_one() {
    local tag="$1" force="$2" line suite packages hash work root mirror
    line="$(spec_line "$tag")" || die "no line for $tag in $list"
    read -r _ suite packages <<<"$line"
    hash="$(spec_hash "$line")"

    local lockdir="${JDKIT_LOCK_DIR:-/tmp}"
    exec 9>"$lockdir/jdkit-rootfs-${tag//[^A-Za-z0-9_.-]/_}.lock"
    flock 9
    if [[ "$force" != 1 && "$(image_spec_label "$tag")" == "$hash" ]]; then
        log "$tag is up to date (spec $hash)"
        exec 9>&-
        return 0
    fi

    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    [[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
    mirror="$(detect_mirror "$suite")"
    work="$(mktemp -d "${TMPDIR:-/var/tmp}/jdkit-rootfs.XXXXXX")"
    WORK_DIRS+=("$work")
    root="$work/root"
    log "building $tag: debootstrap --variant=minbase --include=$packages $suite ($mirror)"
    local start=$SECONDS
    if ! debootstrap --variant=minbase --components=main --include="$packages" \
            "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 40 "$work/debootstrap.log" >&2
        [[ -f "$root/debootstrap/debootstrap.log" ]] && tail -n 40 "$root/debootstrap/debootstrap.log" >&2
        unmount_under "$work"
        die "debootstrap failed for $tag"
    fi
    unmount_under "$work"
    # Trim what a container never needs (package caches, docs).
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
        "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log \
        "$root"/var/cache/debconf/*-old "$root"/debootstrap
    tar --numeric-owner --one-file-system -C "$root" -c . | docker import \
        --change "LABEL jdkit.rootfs.spec=$hash jdkit.rootfs.suite=$suite jdkit.rootfs.packages=$packages" \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$tag" >/dev/null
    log "built $tag in $((SECONDS - start))s (spec $hash)"
    cleanup
    exec 9>&-
}

WORK_DIRS=()
cleanup() {
    local w
    for w in "${WORK_DIRS[@]}"; do
        # Never let rm cross into a mount that is still there.
        unmount_under "$w"
        rm -rf --one-file-system "$w"
    done
    WORK_DIRS=()
}
trap cleanup EXIT

main() {
    local force=0 all=0 tags=()
    while (($#)); do
        case "$1" in
            --force) force=1 ;;
            --all) all=1 ;;
            --spec-hash)
                shift
                spec_hash "$(spec_line "${1:?--spec-hash needs a TAG}")" || die "no line for $1"
                return ;;
            -h|--help) sed -n '2,16p' "$self"; return ;;
            -*) die "unknown option $1" ;;
            *) tags+=("$1") ;;
        esac
        shift
    done
    if ((all)); then
        mapfile -t tags < <(awk '!/^[[:space:]]*(#|$)/ { print $1 }' "$list")
    fi
    ((${#tags[@]})) || die "no TAG given (or --all)"
    for tag in "${tags[@]}"; do
        build_one "$tag" "$force"
    done
}

main "$@"
