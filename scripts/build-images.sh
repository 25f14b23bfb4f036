#!/usr/bin/env bash
# Builds the three images (dispatch-agent, dispatch-gateway, dispatch-operator) from
# docker/*.Dockerfile without Docker or a registry, and saves each as an image archive that
# `ctr images import` (or `docker load`) takes:
#
#   1. a base root filesystem from Debian's packages (debootstrap --variant=minbase bookworm),
#      made into the image localhost/dispatch-base:<hash>, and the node's pause image;
#   2. the project's own binaries (cargo build; $DISPATCH_IMAGE_PROFILE, default dev,
#      stripped), web/dist and tools/claude's node_modules, put in a build context's
#      `prebuilt/` directory;
#   3. buildah builds each Dockerfile with BASE=localhost/dispatch-base:<hash> and
#      BINARIES=prebuilt, so the files are the same ones a user builds with Docker.
#
# Everything is cached by content hash under $DISPATCH_CACHE/images: a second run with
# nothing changed returns in seconds. The last line of stdout is an env file:
#   DISPATCH_IMAGE_TAG=<tag> DISPATCH_IMAGE_DIR=<dir with *.tar> DISPATCH_BASE_IMAGE=<ref>
#
#   scripts/build-images.sh                 build what changed
#   DISPATCH_IMAGE_NO_CARGO=1 ...           use the binaries already in $CARGO_TARGET_DIR
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/setup.d/50-real-node.sh installs it)"
done
[ "$(id -u)" -eq 0 ] || die "building images with buildah needs root here"

IMAGES="$DISPATCH_CACHE/images"
mkdir -p "$IMAGES"
exec 7>"$IMAGES/.lock"
flock 7

# buildah as root, its own storage under the cache (overlay, as the kernel allows), and
# rlimits within this machine's hard limits (no CAP_SYS_RESOURCE: runtimes' defaults of
# 1048576 open files cannot be set here).
export STORAGE_DRIVER=overlay
BUILDAH=(buildah --root "$IMAGES/storage" --runroot "$IMAGES/run")
# Working containers left by a build that was killed hold their layers: nothing else builds
# here while we hold the lock.
"${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# --- 1. base -------------------------------------------------------------------------
SUITE=bookworm
MIRROR="${DISPATCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base_hash="$(printf '%s\n' "$SUITE" minbase "$MIRROR" "base-recipe-1" | sha256sum | cut -c1-16)"
BASE_REF="localhost/dispatch-base:$base_hash"
base_tar="$IMAGES/base-$base_hash.rootfs.tar"
if [ ! -s "$base_tar" ]; then
  step "base root filesystem: debootstrap --variant=minbase $SUITE"
  tmp="$IMAGES/base-$base_hash.tmp"
  rm -rf "$tmp"
  start=$SECONDS
  debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$IMAGES/base-$base_hash.log" 2>&1 ||
    { tail -20 "$IMAGES/base-$base_hash.log" >&2; die "debootstrap failed"; }
  rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*
  tar -C "$tmp" --numeric-owner -cf "$base_tar.tmp" .
  rm -rf "$tmp"
  mv "$base_tar.tmp" "$base_tar"
  echo "base root filesystem in $((SECONDS - start)) s ($(du -sh "$base_tar" | cut -f1))" >&2
fi
if ! "${BUILDAH[@]}" inspect --type image "$BASE_REF" >/dev/null 2>&1; then
  c="$("${BUILDAH[@]}" from scratch)"
  "${BUILDAH[@]}" add "$c" "$base_tar" / >/dev/null
  "${BUILDAH[@]}" config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  "${BUILDAH[@]}" commit -q "$c" "$BASE_REF" >/dev/null
  "${BUILDAH[@]}" rm "$c" >/dev/null
fi
# The pause image for pod sandboxes: the base plus Debian's static tini as PID 1, which
# reaps every orphan of the pod (workspace pods share their process namespace so that the
# sandbox's PID 1, not the agent, collects what terminals leave behind), over a process that
# waits forever. The runtime stops sandboxes with SIGKILL.
[ -x /usr/bin/tini-static ] || die "tini is not installed (scripts/setup.d/50-real-node.sh installs it)"
pause_hash="$({ echo "$base_hash pause-2"; sha256sum /usr/bin/tini-static; } | sha256sum | cut -c1-16)"
PAUSE_REF="localhost/dispatch-pause:$pause_hash"
if ! "${BUILDAH[@]}" inspect --type image "$PAUSE_REF" >/dev/null 2>&1; then
  c="$("${BUILDAH[@]}" from "$BASE_REF")"
  "${BUILDAH[@]}" copy "$c" /usr/bin/tini-static /usr/local/bin/pause-init >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/usr/local/bin/pause-init","--","/bin/sleep"]' --cmd infinity "$c"
  "${BUILDAH[@]}" commit -q "$c" "$PAUSE_REF" >/dev/null
  "${BUILDAH[@]}" rm "$c" >/dev/null
fi

# --- 2. the project's binaries --------------------------------------------------------
PROFILE="${DISPATCH_IMAGE_PROFILE:-dev}"
case "$PROFILE" in dev) out_dir=debug ;; *) out_dir="$PROFILE" ;; esac
if [ "${DISPATCH_IMAGE_NO_CARGO:-0}" != 1 ]; then
  step "cargo build --profile $PROFILE (agent, gateway, operator)"
  cargo build --locked --profile "$PROFILE" -p dispatch-agent -p dispatch-gateway -p dispatch-operator --bins
fi
[ -f web/dist/index.html ] || die "web/dist is missing: build the UI first (cd web && npm run build)"
[ -x tools/claude/node_modules/.bin/claude ] || die "tools/claude is not installed (scripts/setup.d/30-claude.sh)"

ctx="$IMAGES/context"
rm -rf "$ctx"
mkdir -p "$ctx/prebuilt"
for b in dispatch-agent dispatch-gateway dispatch-operator; do
  [ -x "$CARGO_TARGET_DIR/$out_dir/$b" ] || die "no $CARGO_TARGET_DIR/$out_dir/$b"
  objcopy --strip-debug "$CARGO_TARGET_DIR/$out_dir/$b" "$ctx/prebuilt/$b"
done
cp -a web/dist "$ctx/prebuilt/web-dist"
mkdir -p "$ctx/prebuilt/claude"
cp -a tools/claude/package.json tools/claude/package-lock.json tools/claude/node_modules "$ctx/prebuilt/claude/"
rm -f "$ctx/prebuilt/claude/node_modules/.dispatch-lock-sha"

# --- 3. the images ------------------------------------------------------------------
tag="$({
  echo "$base_hash $pause_hash"
  cat docker/agent.Dockerfile docker/gateway.Dockerfile docker/operator.Dockerfile
  (cd "$ctx" && find prebuilt -type f -print0 | sort -z | xargs -0 sha256sum)
} | sha256sum | cut -c1-16)"
out="$IMAGES/$tag"
if [ -f "$out/.done" ]; then
  echo "images up to date: tag $tag in $out" >&2
else
  rm -rf "$out"
  mkdir -p "$out"
  for name in agent gateway operator; do
    step "image dispatch-$name:$tag (buildah, docker/$name.Dockerfile)"
    start=$SECONDS
    "${BUILDAH[@]}" bud --quiet --layers=false --isolation chroot --network host "${ULIMITS[@]}" \
      --build-arg "BASE=$BASE_REF" --build-arg BINARIES=prebuilt \
      -f "$ROOT/docker/$name.Dockerfile" -t "localhost/dispatch-$name:$tag" "$ctx" >/dev/null
    "${BUILDAH[@]}" push -q "localhost/dispatch-$name:$tag" \
      "docker-archive:$out/dispatch-$name.tar:localhost/dispatch-$name:$tag"
    echo "dispatch-$name:$tag in $((SECONDS - start)) s ($(du -sh "$out/dispatch-$name.tar" | cut -f1))" >&2
  done
  for ref in "$BASE_REF" "$PAUSE_REF"; do
    n="${ref#localhost/}"
    n="${n%%:*}"
    "${BUILDAH[@]}" push -q "$ref" "docker-archive:$out/$n.tar:$ref"
  done
  # buildah 1.28 leaves the working containers of multi-stage builds behind, each with its
  # overlay mounted: they go, so that no mount of this build outlives it.
  "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
  # Old tags go, archives and images alike: only the newest set is kept (each is ~1.3 GB).
  find "$IMAGES" -maxdepth 1 -mindepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{16}' ! -name "$tag" -exec rm -rf {} +
  "${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' |
    grep -E '^localhost/dispatch-(agent|gateway|operator):' | grep -v ":$tag\$" |
    xargs -r "${BUILDAH[@]}" rmi -f >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  touch "$out/.done"
fi
echo "DISPATCH_IMAGE_TAG=$tag DISPATCH_IMAGE_DIR=$out DISPATCH_BASE_IMAGE=$BASE_REF DISPATCH_PAUSE_IMAGE=$PAUSE_REF"
