#!/usr/bin/env bash
# Builds the vmbox guest kernel: Debian's linux-source-6.1, `make tinyconfig`,
# then the fragment in vmbox.config. Usage: build.sh OUT_DIR
# The caller (src/setup/kernel.ts) decides whether a build is needed, from the
# hash of this script, the fragment and the source tarball.
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
src_tar=${VMBOX_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
work=$(mktemp -d "${out}.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "kernel: unpacking $(basename "$src_tar")"
tar -xf "$src_tar" -C "$work"
cd "$work"/linux-source-*

echo "kernel: configuring (tinyconfig + kernel/vmbox.config)"
make -s ARCH=x86_64 tinyconfig
scripts/kconfig/merge_config.sh -m -O . .config "$here/vmbox.config" >/dev/null
make -s ARCH=x86_64 olddefconfig

# Every line of the fragment must have survived olddefconfig; a silently dropped
# option (a renamed symbol, an unmet dependency) would give a guest that fails late.
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=y) grep -qx "$line" .config || { echo "kernel: option dropped: $line" >&2; missing=1; } ;; esac
done < "$here/vmbox.config"
[ "$missing" = 0 ] || exit 1

echo "kernel: compiling bzImage with $(nproc) jobs"
make -s ARCH=x86_64 -j"$(nproc)" bzImage KBUILD_BUILD_USER=vmbox KBUILD_BUILD_HOST=vmbox 2>&1 | grep -v '^ *\(CC\|LD\|AR\|AS\)' || true
test -f arch/x86/boot/bzImage
mkdir -p "$out"
# vmlinux boots through the PVH entry point: no decompression, which under TCG
# saves most of a second over bzImage.
cp vmlinux "$out/vmlinux.tmp" && strip --strip-debug "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
cp arch/x86/boot/bzImage "$out/bzImage.tmp" && mv "$out/bzImage.tmp" "$out/bzImage"
cp .config "$out/config"
echo "kernel: built vmlinux $(du -h "$out/vmlinux" | cut -f1)"
