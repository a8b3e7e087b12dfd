#!/usr/bin/env bash
# First-time host set-up for vmbox, idempotent and quick once done:
# Debian packages, npm dependencies, and the compiled CLI.
# (The guest kernel, agent and base image are built by vmbox itself, cached by hash.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
say() { printf 'vmbox: %s\n' "$*" >&2; }
# Set-up that needs root (packages) or a checkout we cannot write says so in one line.
need_root() {
  if [ "$(id -u)" != 0 ]; then
    say "first-time set-up ($1) needs root: run it once with sudo, e.g. sudo ./vmbox run -- true"
    exit 1
  fi
}

# mmdebstrap builds the built-in e2b-base image (Debian packages) on its first use.
packages=(qemu-system-x86 qemu-utils e2fsprogs busybox-static musl-tools mmdebstrap
  linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev xz-utils)
# A cheap look for what each package provides; apt only runs when something is missing.
have_all() {
  command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null &&
    command -v mkfs.ext4 >/dev/null && command -v musl-gcc >/dev/null && command -v make >/dev/null &&
    command -v bison >/dev/null && command -v flex >/dev/null && command -v bc >/dev/null && command -v mmdebstrap >/dev/null &&
    [ -x /bin/busybox ] && [ -f /usr/src/linux-source-6.1.tar.xz ] && [ -f /usr/include/libelf.h ] &&
    [ -f /usr/include/openssl/ssl.h ]
}

# `--test`: what the test suite needs besides: a real registry, zstd to build zstd layers,
# skopeo to write OCI layouts and docker-save archives, tmux to drive `vmbox shell` in a terminal.
# `--bench` adds umoci, the other half of the image-pull comparison.
if [ "${1:-}" = --test ] || [ "${1:-}" = --bench ]; then
  packages+=(docker-registry zstd skopeo tmux)
  [ "$1" = --bench ] && packages+=(umoci)
  have_test() {
    command -v docker-registry >/dev/null && command -v zstd >/dev/null && command -v skopeo >/dev/null && command -v tmux >/dev/null &&
      { [ "$1" != --bench ] || command -v umoci >/dev/null; }
  }
else
  have_test() { true; }
fi

if ! have_all || ! have_test "${1:-}"; then
  need_root "installing Debian packages"
  say "installing Debian packages: ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${packages[@]}" >&2
fi

cd "$root"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  [ -w . ] || need_root "npm ci in $root"
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
# The CLI runs from one bundled file: loading it is ~150 ms faster than the module tree.
if [ ! -f dist/.stamp ] || [ -n "$(find src package.json -newer dist/.stamp -print -quit)" ]; then
  [ -w . ] || need_root "compiling vmbox in $root"
  say "compiling vmbox"
  rm -rf dist
  npm run build --silent >&2
  touch dist/.stamp
fi
