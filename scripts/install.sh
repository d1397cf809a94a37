#!/usr/bin/env bash
# Installs ossmount system-wide:
#   $PREFIX/bin/ossmount                       the binary (built in release mode)
#   $SBINDIR/mount.fuse.ossmount -> ossmount   mount(8) helper, so fstab type fuse.ossmount works
#   $SBINDIR/mount.ossmount      -> ossmount   (for `mount -t ossmount`)
#   $PREFIX/share/man/man1/ossmount.1          man page generated from the CLI definition
#   $PREFIX/share/bash-completion/completions/ossmount, zsh and fish completions
#
# Usage: scripts/install.sh [--no-build] [--uninstall]
# Environment: PREFIX (default /usr/local), SBINDIR (default /sbin), DESTDIR (staging root
# for packagers, default empty), OSSMOUNT_BIN (binary to install instead of
# target/release/ossmount, implies --no-build).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-/sbin}
DESTDIR=${DESTDIR:-}
build=1
uninstall=0
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --uninstall) uninstall=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

bin="$DESTDIR$PREFIX/bin/ossmount"
helpers=("$DESTDIR$SBINDIR/mount.fuse.ossmount" "$DESTDIR$SBINDIR/mount.ossmount")
man="$DESTDIR$PREFIX/share/man/man1/ossmount.1"
bash_comp="$DESTDIR$PREFIX/share/bash-completion/completions/ossmount"
zsh_comp="$DESTDIR$PREFIX/share/zsh/site-functions/_ossmount"
fish_comp="$DESTDIR$PREFIX/share/fish/vendor_completions.d/ossmount.fish"

if [ "$uninstall" = 1 ]; then
  rm -f "$bin" "${helpers[@]}" "$man" "$bash_comp" "$zsh_comp" "$fish_comp"
  echo "ossmount uninstalled from $DESTDIR$PREFIX and $DESTDIR$SBINDIR"
  exit 0
fi

if [ "$build" = 1 ] && [ -z "${OSSMOUNT_BIN:-}" ]; then
  cargo build --release --bin ossmount
fi
src=${OSSMOUNT_BIN:-target/release/ossmount}
[ -x "$src" ] || { echo "install.sh: $src not found (build first or drop --no-build)" >&2; exit 1; }

install -D -m 0755 "$src" "$bin"
for h in "${helpers[@]}"; do
  mkdir -p "$(dirname "$h")"
  # The helper is the same binary: it switches to mount(8)'s calling convention when
  # invoked under this name.
  ln -sf "$PREFIX/bin/ossmount" "$h"
done
mkdir -p "$(dirname "$man")" "$(dirname "$bash_comp")" "$(dirname "$zsh_comp")" "$(dirname "$fish_comp")"
"$src" man > "$man"
"$src" completions bash > "$bash_comp"
"$src" completions zsh > "$zsh_comp"
"$src" completions fish > "$fish_comp"

echo "installed: $bin, ${helpers[*]}, $man, completions"
echo "fstab example: my-bucket /mnt/oss fuse.ossmount _netdev,region=cn-hangzhou,credentials_file=/etc/passwd-ossfs 0 0"
