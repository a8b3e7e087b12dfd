#!/usr/bin/env bash
# Builds the busybox of vmbox's base image: the source of the Debian package
# that /bin/busybox comes from (busybox-static, same version and patches),
# Debian's static configuration, then the options in vmbox.config.
# Usage: build.sh OUT_DIR. The caller (src/setup/busybox.ts) decides whether a
# build is needed, from the hash of this script, the fragment and the package.
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${out}.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

version=$(dpkg-query -W -f='${source:Version}' busybox-static)
echo "busybox: fetching the source of busybox $version"
# The machine's own Debian mirrors, as deb-src, in a private apt state: the
# system's apt configuration stays as it is.
mkdir -p "$work/apt/parts" "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sed 's/^Types: *deb$/Types: deb-src/' "$f" >"$work/apt/parts/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] && sed -n 's/^deb \(.*\)$/deb-src \1/p' "$f" >>"$work/apt/parts/vmbox-src.list"
done
apt_opts=(-q -o "Dir::Etc::SourceList=/nonexistent" -o "Dir::Etc::SourceParts=$work/apt/parts"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "busybox=$version" >/dev/null)

echo "busybox: configuring (Debian's static configuration + busybox/vmbox.config)"
cd "$work/src"
tar -xf busybox_*.orig.tar.*
cd busybox-*/
tar -xf ../busybox_*.debian.tar.*
grep -v '^#' debian/patches/series | grep -v '^[[:space:]]*$' | while read -r p; do patch -p1 -s <"debian/patches/$p"; done
cp debian/config/pkg/static .config
grep '^CONFIG_' "$here/vmbox.config" | while IFS='=' read -r name value; do
  sed -i -e "/^$name=/d" -e "/^# $name is not set$/d" .config
  echo "$name=$value" >>.config
done
{ yes "" || true; } | make -s oldconfig >/dev/null # yes ends on SIGPIPE
# Every option of the fragment must have survived oldconfig.
grep '^CONFIG_' "$here/vmbox.config" | while read -r line; do
  grep -qx "$line" .config || { echo "busybox: option dropped: $line" >&2; exit 1; }
done

echo "busybox: compiling with $(nproc) jobs"
make -s -j"$(nproc)" busybox BB_EXTRA_VERSION="Debian $version, vmbox"
./busybox --list-full >/dev/null
mkdir -p "$out"
cp busybox "$out/busybox.tmp" && strip "$out/busybox.tmp" && mv "$out/busybox.tmp" "$out/busybox"
echo "busybox: built $(du -h "$out/busybox" | cut -f1)"
