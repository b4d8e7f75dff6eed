#!/usr/bin/env bash
# Build the container image from Containerfile and prove it (docs/deploy.md, "How the image is
# tested"): tests/deploy/test_image.py runs the worker from the built image's own filesystem,
# as the image's user, with its environment and CMD, as PID 1 of its own process namespace, in
# a network namespace that has nothing but loopback (so nothing can be downloaded at run time),
# and runs the smoke test (scripts/smoke.sh), the HEALTHCHECK, SIGTERM draining and two
# workers on a Redis bus with compose.yaml's settings against it.
#
# Runs as root (through sudo when started by another user). Installs podman, debootstrap and what the proof
# uses when missing. Extra arguments go to pytest.
#
# What works in a sandbox that cannot run containers (runc's setrlimit is refused) and reaches
# no registry of base images:
#   - the base image is made here: debootstrap (Debian bookworm, minbase, python3, python3-venv,
#     ca-certificates) into a tarball cached in $ASR_IMAGE_CACHE (/var/cache/asr-worker), then
#     `podman import`; it is passed as --build-arg BASE_IMAGE. The tarball is made once
#     (about 2.5 minutes); delete it to make it anew.
#   - this machine's own CA certificates (/usr/local/share/ca-certificates) go into that base, so
#     pip in the build trusts the same TLS proxy, if any, that this machine's pip does.
#   - `podman build --isolation chroot`: RUN steps need no OCI runtime. `--format docker`: the
#     OCI format has no HEALTHCHECK, and podman would drop it.
#   - podman keeps its images in its own storage under $ASR_IMAGE_CACHE (overlay driver, the
#     cgroupfs manager), apart from any other podman user on the machine, and its layer cache
#     makes a second run fast.
#   - instead of `podman run`: `podman image mount` (read-only), then chroot into it, with
#     /proc, /dev and a tmpfs /tmp mounted in a private mount namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then  # podman build, debootstrap, chroot and namespaces need root
  command -v sudo >/dev/null || { echo "test-image.sh: run it as root" >&2; exit 2; }
  exec sudo --preserve-env=ASR_IMAGE_CACHE,DEBIAN_MIRROR "$0" "$@"
fi

CACHE="${ASR_IMAGE_CACHE:-/var/cache/asr-worker}"
BASE_PACKAGES="python3,python3-venv,ca-certificates"
BASE_TAR="$CACHE/base-bookworm-minbase-python3.tar"
BASE_IMAGE="localhost/asr-worker-base:bookworm"
IMAGE="localhost/asr-worker:test"
podman=(podman --root "$CACHE/containers" --runroot /run/asr-worker-containers
        --storage-driver overlay --cgroup-manager cgroupfs)

needed=()
for tool in podman:podman debootstrap:debootstrap unshare:util-linux ip:iproute2 redis-server:redis-server; do
  command -v "${tool%%:*}" >/dev/null || needed+=("${tool#*:}")
done
if [ ${#needed[@]} -gt 0 ]; then
  echo "installing Debian packages: ${needed[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
scripts/install.sh test
mkdir -p "$CACHE"

started=$SECONDS
if [ ! -s "$BASE_TAR" ]; then
  echo "making the base image (debootstrap bookworm: $BASE_PACKAGES) ..." >&2
  work="$(mktemp -d "$CACHE/base.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$work/rootfs" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
    chroot "$work/rootfs" update-ca-certificates >/dev/null 2>&1 || { echo "update-ca-certificates failed" >&2; exit 1; }
  fi
  chroot "$work/rootfs" apt-get clean
  rm -rf "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -cf "$BASE_TAR.part" . && mv "$BASE_TAR.part" "$BASE_TAR"
  rm -rf "$work"
  trap - EXIT
  "${podman[@]}" rmi -i "$BASE_IMAGE" >/dev/null
fi
if ! "${podman[@]}" image exists "$BASE_IMAGE"; then
  "${podman[@]}" import -q "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi
echo "base image ready in $((SECONDS - started)) s" >&2

started=$SECONDS
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
build=("${podman[@]}" build --isolation chroot --format docker --build-arg BASE_IMAGE="$BASE_IMAGE" -f Containerfile)
# The build stage is tagged too: its layers are then kept by the prune below (which clears what
# earlier builds left), and an unchanged Containerfile, lock and source rebuild from the cache.
if ! { "${build[@]}" --target build -t "$IMAGE-build" . && "${build[@]}" -t "$IMAGE" .; } > "$log" 2>&1; then
  tail -40 "$log" >&2
  exit 1
fi
"${podman[@]}" image prune -f >/dev/null
echo "image $IMAGE built in $((SECONDS - started)) s ($("${podman[@]}" image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=si)B)" >&2

config="$(mktemp)"
"${podman[@]}" image inspect "$IMAGE" > "$config"
rootfs="$("${podman[@]}" image mount "$IMAGE")"
trap '"${podman[@]}" image unmount "$IMAGE" >/dev/null; rm -f "$log" "$config"' EXIT
started=$SECONDS
# The mounts exist only in the new mount namespace, and end with it.
unshare --net --mount --propagation private -- bash -euo pipefail -c '
  rootfs="$1" config="$2"; shift 2
  ip link set lo up
  mount -t proc proc "$rootfs/proc"
  mount --rbind /dev "$rootfs/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$rootfs/tmp"
  ASR_IMAGE_ROOTFS="$rootfs" ASR_IMAGE_CONFIG="$config" \
    .venv/bin/pytest -q -p no:cacheprovider tests/deploy/test_image.py "$@"
' test-image "$rootfs" "$config" "$@"
echo "image tests ran in $((SECONDS - started)) s" >&2
