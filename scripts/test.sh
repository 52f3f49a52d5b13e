#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need, type-checks,
# builds the one-file bundle, runs every uvu test (unit and integration) and prints
# one closing line "N passed, N failed". uvu's exit status is not trusted: the summary is.
#
#   scripts/test.sh            everything
#   scripts/test.sh --unit     unit tests only (no Debian packages, no network peers)
#   scripts/test.sh PATTERN    only test files whose path matches PATTERN (regexp)
set -uo pipefail
cd "$(dirname "$0")/.."
UNIT=0; PATTERN=""
for a in "$@"; do
  case $a in
    --unit) UNIT=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) PATTERN=$a ;;
  esac
done
say() { echo "test.sh: $*" >&2; }

# --- what the tests need ---------------------------------------------------------------
# Debian packages the tests need, by the command each provides: libiscsi tools (initiator
# and conformance suite), qemu-img with its iSCSI driver (bulk data), and for the board
# image tests sfdisk, mkfs.vfat, mtools, debugfs, xz and systemd-analyze.
PKGS_CMDS="iscsi-inq:libiscsi-bin iscsi-ls:libiscsi-bin iscsi-test-cu:libiscsi-bin iscsi-readcapacity16:libiscsi-bin qemu-img:qemu-utils"
PKGS_CMDS="$PKGS_CMDS sfdisk:fdisk mkfs.vfat:dosfstools mcopy:mtools debugfs:e2fsprogs xz:xz-utils systemd-analyze:systemd"
# The USB test boots Debian's kernel under QEMU (scripts/vm) and checks the disk with sg3-utils;
# the management test drives the serial shell through a socat PTY pair; the first-boot guest
# reads the gadget console's output queue with python3; the bad-blocks test builds its disk with
# losetup and dmsetup (device-mapper's error target).
PKGS_CMDS="$PKGS_CMDS qemu-system-x86_64:qemu-system-x86 cpio:cpio sg_inq:sg3-utils socat:socat xorriso:xorriso python3:python3 dmsetup:dmsetup losetup:mount"
# The USB fast path's C loop (src/native/lunbox-fast.c) is built with the C compiler.
PKGS_CMDS="$PKGS_CMDS cc:gcc"
need_pkgs() {
  local missing="" c p
  for cp in $PKGS_CMDS; do c=${cp%%:*}; p=${cp#*:}; command -v "$c" >/dev/null || missing="$missing $p"; done
  # a static busybox for the VM's initramfs (a dynamic one has no libc there)
  { [ -x /bin/busybox ] && ! grep -qa '/ld-linux' /bin/busybox; } || missing="$missing busybox-static"
  # qemu-img's iscsi:// driver lives in qemu-block-extra
  if command -v qemu-img >/dev/null && ! ls /usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so /usr/lib/*/qemu/block-iscsi.so >/dev/null 2>&1; then
    missing="$missing qemu-block-extra"
  fi
  echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' '
}
if [ "$UNIT" = 0 ]; then
  missing=$(need_pkgs)
  if [ -n "${missing// /}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Debian packages:$missing"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/tmp/lunbox-apt.log 2>&1 \
        || { say "apt-get install failed (log: /tmp/lunbox-apt.log)"; }
    fi
    missing=$(need_pkgs)
    if [ -n "${missing// /}" ]; then
      say "MISSING Debian packages needed by the integration tests:$missing"
      say "install them with: apt-get install$missing   (or run: scripts/test.sh --unit)"
      echo "0 passed, 1 failed"; exit 1
    fi
  fi
fi
if [ ! -x node_modules/.bin/uvu ] || [ ! -x node_modules/.bin/tsc ]; then
  say "installing npm dev dependencies"
  npm ci --no-audit --no-fund >/tmp/lunbox-npm.log 2>&1 || npm install --no-audit --no-fund >>/tmp/lunbox-npm.log 2>&1 \
    || { say "npm install failed (log: /tmp/lunbox-npm.log)"; echo "0 passed, 1 failed"; exit 1; }
fi

# --- type-check and build ---------------------------------------------------------------
say "type-check (tsc --noEmit)"
if ! node_modules/.bin/tsc --noEmit -p . ; then say "type-check failed"; echo "0 passed, 1 failed"; exit 1; fi
say "build (tsup -> dist/lunbox.js)"
if ! node_modules/.bin/tsup >/tmp/lunbox-build.log 2>&1; then cat /tmp/lunbox-build.log >&2; say "build failed"; echo "0 passed, 1 failed"; exit 1; fi
say "build (scripts/build-native.sh -> dist/lunbox-fast.node)"
# --optional: without a C compiler (--unit on a bare machine) the C loop's tests fail, saying so.
if ! sh scripts/build-native.sh --optional >&2; then say "native build failed"; echo "0 passed, 1 failed"; exit 1; fi

# --- tests ------------------------------------------------------------------------------
# Unit tests: test/**/*.test.ts except test/integration. Integration tests start
# dist/lunbox.js and talk to it with real initiators.
OUT=$(mktemp -d /tmp/lunbox-test.XXXXXX)
total=0; passed=0; skipped=0; failedfiles=""
run_uvu() {  # dir pattern label
  local dir=$1 pat=$2 label=$3
  local log="$OUT/$label.log"
  say "uvu $dir ($label)"
  node_modules/.bin/uvu -r tsx/cjs "$dir" "$pat" --no-color 2>&1 | tee "$log"
  local t p s
  t=$(sed -n 's/^  Total: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  p=$(sed -n 's/^  Passed: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  s=$(sed -n 's/^  Skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  t=${t:-0}; p=${p:-0}; s=${s:-0}
  # No test in a phase is a failure, unless a PATTERN narrowed the run to other phases.
  if { [ "$t" = 0 ] && [ -z "$PATTERN" ]; } || [ "$p" != "$t" ]; then failedfiles="$failedfiles $label"; fi
  if grep -q 'FAIL\|✘' "$log"; then failedfiles="$failedfiles $label"; fi
  total=$((total + t)); passed=$((passed + p)); skipped=$((skipped + s))
}
# test/image builds disk images with Debian tools: it runs with the integration tests.
UNIT_PAT='^(?!integration/|image/).*\.test\.ts$'
if [ -n "$PATTERN" ]; then UNIT_PAT="^(?!integration/|image/).*${PATTERN}.*\\.test\\.ts$"; fi
run_uvu test "$UNIT_PAT" unit
if [ "$UNIT" = 0 ]; then
  IPAT='.*\.test\.ts$'; [ -n "$PATTERN" ] && IPAT=".*${PATTERN}.*\\.test\\.ts$"
  run_uvu test/image "$IPAT" image
  run_uvu test/integration "$IPAT" integration
fi
failed=$((total - passed))
if [ -n "$failedfiles" ] && [ "$failed" = 0 ]; then failed=1; fi
[ "$skipped" != 0 ] && say "uvu reports $skipped skipped"
say "logs in $OUT"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$total" -gt 0 ]
