#!/usr/bin/env bash
# Builds the Debian package target/debian/ossmount_<version>_<arch>.deb with dpkg-deb
# (Debian's own tool, always present where dpkg is; cargo-deb would add a long compile for
# the same result). Contents:
#   /usr/bin/ossmount                                   the binary (debug info stripped)
#   /sbin/mount.fuse.ossmount, /sbin/mount.ossmount     mount(8) helpers (symlinks) where
#                                                       mount(8) looks for them; on merged-/usr
#                                                       systems /sbin is /usr/sbin
#   /usr/share/man/man1/ossmount.1.gz                   `ossmount man`, gzipped
#   /usr/share/bash-completion/completions/ossmount     `ossmount completions bash`
#   /usr/share/zsh/vendor-completions/_ossmount, /usr/share/fish/vendor_completions.d/ossmount.fish
#   /usr/share/doc/ossmount/copyright, README.md.gz, ossmount-example.service
# Depends: libc6 (the binary's glibc version) and fuse3 (fusermount3 for unprivileged mounts,
# /etc/fuse.conf) and ca-certificates: HTTPS trusts the system CA store (plus --ca-cert),
# so without it no public endpoint's certificate would verify.
#
# Usage: scripts/package.sh
# Environment: OSSMOUNT_BIN  package this binary instead of building target/release/ossmount
#                            (CI packages the debug build it already has)
#              DEB_COMPRESSION  dpkg-deb compressor: xz (default), gzip, zstd or none
#              DEB_OUT_DIR      output directory (default target/debian)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb not found (Debian/Ubuntu only)" >&2; exit 1; }

if [ -z "${OSSMOUNT_BIN:-}" ]; then
  cargo build --release --bin ossmount
fi
bin=${OSSMOUNT_BIN:-target/release/ossmount}
[ -x "$bin" ] || { echo "package.sh: $bin is not an executable" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out_dir=${DEB_OUT_DIR:-target/debian}
stage="$out_dir/ossmount_${version}_${arch}"
deb="$out_dir/ossmount_${version}_${arch}.deb"

rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/sbin" "$stage/usr/share/man/man1" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/doc/ossmount"

install -m 0755 "$bin" "$stage/usr/bin/ossmount"
strip --strip-debug "$stage/usr/bin/ossmount"
ln -s /usr/bin/ossmount "$stage/sbin/mount.fuse.ossmount"
ln -s /usr/bin/ossmount "$stage/sbin/mount.ossmount"
"$bin" man | gzip -9n > "$stage/usr/share/man/man1/ossmount.1.gz"
"$bin" completions bash > "$stage/usr/share/bash-completion/completions/ossmount"
"$bin" completions zsh > "$stage/usr/share/zsh/vendor-completions/_ossmount"
"$bin" completions fish > "$stage/usr/share/fish/vendor_completions.d/ossmount.fish"
gzip -9n < README.md > "$stage/usr/share/doc/ossmount/README.md.gz"
install -m 0644 packaging/ossmount-example.service "$stage/usr/share/doc/ossmount/"
cat > "$stage/usr/share/doc/ossmount/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ossmount
Source: the ossmount source repository

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

Files: proto/csi/csi.proto
Copyright: The Container Storage Interface authors
License: Apache-2.0
EOF
find "$stage/usr" -type f -exec chmod 0644 {} +
chmod 0755 "$stage/usr/bin/ossmount"

# The newest glibc symbol version the binary needs is the libc6 it depends on.
glibc=$(objdump -T "$stage/usr/bin/ossmount" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: ossmount
Version: $version
Architecture: $arch
Maintainer: ossmount developers <ossmount@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= ${glibc:-2.17}), fuse3, ca-certificates
Section: utils
Priority: optional
Description: mount an Alibaba Cloud OSS bucket as a local filesystem (FUSE)
 ossmount mounts an OSS bucket (or a prefix of it) as a directory: reads stream
 ranged GETs with prefetch and a block cache, writes stream as multipart uploads,
 every transfer is checked with CRC64. Includes the mount.fuse.ossmount helper for
 fstab lines of type fuse.ossmount, and a CSI node plugin (ossmount csi) for
 Kubernetes.
EOF

case "${DEB_COMPRESSION:-xz}" in
  xz|gzip|zstd|none) ;;
  *) echo "package.sh: DEB_COMPRESSION must be xz, gzip, zstd or none" >&2; exit 2 ;;
esac
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
