#!/usr/bin/env bash
# Builds the lab image without any registry:
#   1. a Debian minbase root file system from debootstrap (suite bookworm: Redis 7.0.15, or
#      trixie: Redis 8.0.2), with every package the lab needs, cached as a tarball under
#      .cache/lab/ (keyed by suite and package list);
#   2. `docker import` of that tarball as quantum-lab-base:<key>;
#   3. a Dockerfile FROM that base adding files only (stubs, units, qt-lab, masks, STOPSIGNAL).
# Each step is skipped when its output exists for the same inputs: the final image carries a
# label with the hash of its inputs, so a warm run is a few docker calls.
#   lab/image.sh [--force] [--suite bookworm|trixie]
#   QT_LAB_SUITE=trixie lab/image.sh
# The image's tag: QT_LAB_IMAGE when set, else quantum-lab:latest for bookworm and
# quantum-lab:<suite> for any other suite (quantum-lab:trixie).
set -euo pipefail
image_from_env=${QT_LAB_IMAGE:-}
# shellcheck source=lab/common.sh
source "$(dirname "$0")/common.sh"

SUITE=${QT_LAB_SUITE:-bookworm}
force=false
while [[ $# -gt 0 ]]; do
  case $1 in
    --force) force=true ;;
    --suite) [[ $# -ge 2 ]] || die "--suite needs a value (bookworm or trixie)"; SUITE=$2; shift ;;
    --suite=*) SUITE=${1#--suite=} ;;
    *) die "unknown argument $1 (usage: lab/image.sh [--force] [--suite bookworm|trixie])" ;;
  esac
  shift
done
case $SUITE in
  bookworm | trixie) ;;
  *) die "suite $SUITE is not one the lab was checked on (bookworm, trixie)" ;;
esac
if [[ -n $image_from_env ]]; then
  QT_LAB_IMAGE=$image_from_env
elif [[ $SUITE == bookworm ]]; then
  QT_LAB_IMAGE=quantum-lab:latest
else
  QT_LAB_IMAGE=quantum-lab:$SUITE
fi
PACKAGES=(
  systemd systemd-sysv python3 python3-redis python3-apt redis-server redis-tools redis-sentinel
  procps iproute2 less
)
LABEL=org.quantum-remediation.lab.inputs

rootfs_key() {
  # What decides the root file system's content: suite, packages and this recipe's version.
  printf '%s\n' "$SUITE" "${PACKAGES[@]}" "recipe-1" | sha256sum | cut -c1-12
}

build_rootfs_tarball() {
  local tarball=$1 rootfs
  rootfs=$QT_LAB_CACHE/rootfs-$SUITE.tmp
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  local mirror
  mirror=$(debian_mirror) || die "apt's sources name no Debian mirror (/etc/apt/sources.list*): debootstrap needs one"
  log "debootstrap $SUITE minbase from $mirror (about a minute)"
  local include
  include=$(IFS=,; echo "${PACKAGES[*]}")
  debootstrap --variant=minbase --include="$include" "$SUITE" "$rootfs" "$mirror" \
    > "$QT_LAB_CACHE/debootstrap-$SUITE.log" 2>&1 \
    || die "debootstrap failed; see $QT_LAB_CACHE/debootstrap-$SUITE.log"
  # Nothing inside the image reaches a network: no package lists, no caches.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

main() {
  mkdir -p "$QT_LAB_CACHE"
  local key tarball base
  key=$(rootfs_key)
  tarball=$QT_LAB_CACHE/rootfs-$SUITE-$key.tar
  base=quantum-lab-base:$key
  if $force || ! image_exists "$base"; then
    if $force || [[ ! -s $tarball ]]; then
      build_rootfs_tarball "$tarball"
    fi
    log "docker import $tarball as $base"
    docker import --change 'ENV container=docker' --change 'CMD ["/lib/systemd/systemd"]' \
      "$tarball" "$base" >/dev/null
  fi
  local base_id files_hash inputs current
  base_id=$(docker image inspect --format '{{.Id}}' "$base")
  files_hash=$(tar -C "$LAB_DIR/image" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -cf - . | sha256sum | cut -c1-16)
  inputs="$base_id/$files_hash"
  current=$(docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$QT_LAB_IMAGE" 2>/dev/null || true)
  if ! $force && [[ $current == "$inputs" ]]; then
    log "image $QT_LAB_IMAGE is up to date"
    return 0
  fi
  log "building $QT_LAB_IMAGE from $base"
  # The 28.x CLI warns that the legacy builder is deprecated: expected with the 20.10 daemon.
  docker build -q --network none --build-arg "BASE=$base" --label "$LABEL=$inputs" \
    -t "$QT_LAB_IMAGE" "$LAB_DIR/image" >/dev/null \
    2> >(grep -v -e DEPRECATED -e 'legacy builder' -e BuildKit -e environment-variable -e '^$' >&2)
  # Older builds of the same tag are dangling now: drop them, keep the base and the tarball.
  docker image prune -f --filter "label=$LABEL" >/dev/null
  log "image $QT_LAB_IMAGE built"
}

main
