#!/usr/bin/env bash
# Build the Debian package: dist/labagent_<version>_<arch>.deb
#
#   cross/package.sh                 native build (e.g. amd64 on a PC)
#   cross/package.sh TARGET          cross build through cross/build.sh, e.g.
#                                    aarch64-unknown-linux-gnu -> arm64,
#                                    armv7-unknown-linux-gnueabihf -> armhf,
#                                    aarch64-unknown-linux-musl -> arm64 (static)
#
# The package (see [package.metadata.deb] at the end of agent/labagent/Cargo.toml):
#   /usr/bin/labagent
#   /usr/lib/systemd/system/labagent.service registered, NOT enabled, NOT started
#   /usr/lib/sysusers.d/labagent.conf        the labagent-secrets group (created in postinst)
#   /etc/labagent/labagent.toml              conffile: a fully commented sample, so the
#                                            service cannot start until it is edited
#   /usr/share/doc/labagent/                 README, technician/troubleshooting/vendor guides,
#                                            examples/ (every sample config)
# An upgrade keeps /etc/labagent/labagent.toml (dpkg asks if both sides changed it) and never
# touches /var/lib/labagent, where queued results live; a running agent is restarted by the
# postinst (SIGTERM: stop, drain, exit; the new binary recovers the same store).
#
# Needs cargo-deb (installed with `cargo install cargo-deb --locked` when missing).
# Environment: CARGO_TARGET_DIR as for cargo (default <workspace>/target).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TARGET=${1:-}
cd "$ROOT"

if ! command -v cargo-deb >/dev/null; then
    echo "==> cargo install cargo-deb"
    cargo install cargo-deb --locked
fi

deb_args=(-p labagent --no-build --no-strip --output "$ROOT/dist/")
if [ -n "$TARGET" ]; then
    "$ROOT/cross/build.sh" "$TARGET" --no-smoke
    deb_args+=(--target "$TARGET")
    case "$TARGET" in
    *-gnu | *-gnueabihf)
        deb_args+=(--variant cross-gnu)
        ;;
    *-musl)
        # Static binary: no shared-library dependencies for dpkg-shlibdeps to find.
        deb_args+=(--deb-version "$(cargo pkgid -p labagent | sed 's/.*[#@]//')+musl")
        ;;
    esac
else
    echo "==> cargo build --release -p labagent"
    cargo build --release --locked -p labagent
fi

mkdir -p "$ROOT/dist"
echo "==> cargo deb ${deb_args[*]}"
deb=$(cargo deb "${deb_args[@]}" | tail -n 1)
echo "==> $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
