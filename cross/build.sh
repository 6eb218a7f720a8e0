#!/usr/bin/env bash
# Cross-build labagent for a Raspberry Pi class target WITHOUT Docker, then smoke-test the
# binary under qemu-user.
#
#   cross/build.sh TARGET [--no-smoke]
#
# TARGET is one of
#   aarch64-unknown-linux-gnu      Pi 3/4/5, 64-bit Raspberry Pi OS Bookworm (glibc >= 2.34)
#   armv7-unknown-linux-gnueabihf  Pi 2/3/4, 32-bit Raspberry Pi OS Bookworm (glibc >= 2.34)
#   aarch64-unknown-linux-musl     64-bit, fully static: any distribution, any glibc age
#   arm-unknown-linux-gnueabihf    Pi 1/Zero (ARMv6): NOT buildable by this script, see below
#
# What it does:
#   1. rustup target add TARGET
#   2. installs Debian's cross gcc (gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf) with
#      apt-get when it is missing, and uses it as the linker and as ring's C compiler
#      (CARGO_TARGET_<TRIPLE>_LINKER, CC_<triple>)
#   3. cargo build --release -p labagent --target TARGET
#   4. unless --no-smoke: installs qemu-user when missing and runs the binary under it:
#      --version, check-config on a sample, decode and translate on corpus captures, and
#      `labagent demo` (a round trip over loopback TCP).
#      Serial ports are never tested under qemu (qemu-user does not emulate the TCGETS2
#      ioctl); they are tested natively with pty pairs by `cargo test`.
#
# Environment:
#   CARGO_TARGET_DIR   where to build (default: <workspace>/target)
#   LABAGENT_CORPUS    corpus directory for the smoke test (default: ../shared/corpus next to
#                      the workspace); the corpus steps are skipped when it is absent
#
# The binary ends in $CARGO_TARGET_DIR/TARGET/release/labagent (stripped by the release
# profile). Package it with cross/package.sh TARGET.
#
# Why no ARMv6 here: rustup on this project's machines does not serve the ARMv6 standard
# library, and Debian's armhf gcc/glibc are ARMv7 (Thumb-2) anyway, so a binary it links would
# die with SIGILL on a Pi Zero. Use `cross` (Docker; cross/Cross.toml) or cargo-zigbuild on a
# machine where rustup serves the target:
#   pip install cargo-zigbuild ziglang
#   cargo zigbuild --release -p labagent --target arm-unknown-linux-gnueabihf.2.28
set -euo pipefail

usage() { sed -n '2,8p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
TARGET=$1
SMOKE=1
[ "${2:-}" = "--no-smoke" ] && SMOKE=0

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CORPUS=${LABAGENT_CORPUS:-$ROOT/../shared/corpus}

case "$TARGET" in
aarch64-unknown-linux-gnu)
    GCC=aarch64-linux-gnu-gcc GCC_PKG=gcc-aarch64-linux-gnu
    QEMU=qemu-aarch64 QEMU_LD_PREFIX=/usr/aarch64-linux-gnu ;;
armv7-unknown-linux-gnueabihf)
    GCC=arm-linux-gnueabihf-gcc GCC_PKG=gcc-arm-linux-gnueabihf
    QEMU=qemu-arm QEMU_LD_PREFIX=/usr/arm-linux-gnueabihf ;;
aarch64-unknown-linux-musl)
    # Rust's musl targets link self-contained (their own crt objects and musl libc.a), so the
    # glibc cross gcc only drives the link and compiles ring's C; the result is static.
    GCC=aarch64-linux-gnu-gcc GCC_PKG=gcc-aarch64-linux-gnu
    QEMU=qemu-aarch64 QEMU_LD_PREFIX= ;;
arm-unknown-linux-gnueabihf)
    echo "build.sh: $TARGET (ARMv6) cannot be built here: see the comment at the top of $0" >&2
    exit 2 ;;
*)
    echo "build.sh: unknown target $TARGET" >&2
    usage ;;
esac

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq "$@"
}

echo "==> rustup target add $TARGET"
rustup target add "$TARGET"

if ! command -v "$GCC" >/dev/null; then
    echo "==> installing $GCC_PKG"
    apt_install "$GCC_PKG"
fi

triple_env=$(echo "$TARGET" | tr 'a-z-' 'A-Z_')
triple_cc=$(echo "$TARGET" | tr '-' '_')
export "CARGO_TARGET_${triple_env}_LINKER=$GCC"
export "CC_${triple_cc}=$GCC"
export "AR_${triple_cc}=${GCC%-gcc}-ar"

echo "==> cargo build --release -p labagent --target $TARGET (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --locked -p labagent --target "$TARGET")

BIN=$CARGO_TARGET_DIR/$TARGET/release/labagent
echo "==> built $BIN ($(stat -c %s "$BIN") bytes)"
command -v file >/dev/null && file "$BIN"

[ "$SMOKE" = 1 ] || exit 0

if ! command -v "$QEMU" >/dev/null; then
    echo "==> installing qemu-user"
    apt_install qemu-user
fi
run() {
    if [ -n "$QEMU_LD_PREFIX" ]; then
        "$QEMU" -L "$QEMU_LD_PREFIX" "$BIN" "$@"
    else
        "$QEMU" "$BIN" "$@"
    fi
}

echo "==> smoke test under $QEMU"
run --version
run check-config --config "$ROOT/configs/sysmex-xn.toml" >/dev/null
echo "check-config configs/sysmex-xn.toml: ok"
if [ -d "$CORPUS" ]; then
    trace=$CORPUS/reconstructed/sysmex_xn550_1.wire.astm
    json=$(run decode "$trace")
    printf '%s\n' "${json:0:300}..."
    case "$json" in *'"checksum_errors":0'*'"type":"R"'*) ;; *)
        echo "decode gave unexpected output" >&2; exit 1 ;;
    esac
    echo "decode $(basename "$trace"): ok"
    oru=$(run translate --config "$ROOT/configs/sysmex-xn.toml" --source xn550 "$trace")
    printf '%s\n' "$oru" | tr '\r' '\n' | sed -n 1,4p
    printf '%s' "$oru" | grep -q 'ORU^R01^ORU_R01' || { echo "translate produced no ORU^R01" >&2; exit 1; }
    echo "translate $(basename "$trace"): ok"
    # A whole round trip over loopback TCP (agent + simulated analyser + file sink, in a temp dir).
    # (Only delivery is checked: the receipt's "queue afterwards" line can still show 1 pending
    # under slow emulation, because demo reads the queue as soon as the file appears.)
    receipt=$(run demo 2>/dev/null) || { printf '%s\n' "$receipt" >&2; echo "demo failed" >&2; exit 1; }
    printf '%s\n' "$receipt" | grep -q 'delivered to       sink "outbox"' || {
        printf '%s\n' "$receipt" >&2; echo "demo delivered nothing" >&2; exit 1; }
    echo "demo: ok (round trip over E1381/TCP, delivered to the file sink)"
else
    echo "corpus not found at $CORPUS: decode/translate smoke steps skipped"
fi
echo "==> $TARGET ok"
