#!/bin/sh
# Build the lunbox-fast addon (src/native/lunbox-fast.c): the USB fast path's serve loop in C.
#
#   scripts/build-native.sh             dist/lunbox-fast.node for this machine (needs cc)
#   scripts/build-native.sh --boards    also dist/native/lunbox-fast-linux-{arm,arm64}.node for the
#                                       boards (needs gcc-arm-linux-gnueabihf, gcc-aarch64-linux-gnu)
#   scripts/build-native.sh --optional  no compiler: say so and succeed (npm run build uses this)
#
# The addon is optional: without it the USB fast path runs its JavaScript loop. It needs no
# Node headers (it declares the few Node-API functions it uses) and no node-gyp.
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
SRC=$HERE/src/native/lunbox-fast.c
OUT=$HERE/dist
OPTIONAL=0 BOARDS=0
for a in "$@"; do
	case $a in
	--optional) OPTIONAL=1 ;;
	--boards) BOARDS=1 ;;
	-h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build-native: unknown option $a (see --help)" >&2; exit 2 ;;
	esac
done
CFLAGS="-O2 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -nostartfiles -D_FILE_OFFSET_BITS=64"
mkdir -p "$OUT"

# cc_to CC OUTPUT [FLAGS...]: compile to a temporary file and rename it into place, so a
# running lunbox that has the old file mapped keeps it intact.
cc_to() {
	_cc=$1 _out=$2; shift 2
	# shellcheck disable=SC2086
	"$_cc" $CFLAGS "$@" -o "$_out.tmp" "$SRC" && mv -f "$_out.tmp" "$_out"
}

CC=${CC:-cc}
if command -v "$CC" >/dev/null 2>&1 && [ "$(uname -s)" = Linux ]; then
	cc_to "$CC" "$OUT/lunbox-fast.node"
	echo "build-native: $OUT/lunbox-fast.node ($(uname -m))"
elif [ $OPTIONAL = 1 ]; then
	echo "build-native: no C compiler ($CC): the USB fast path will run its JavaScript loop (apt-get install gcc, then npm run build)"
else
	echo "build-native: no C compiler ($CC); apt-get install gcc" >&2; exit 1
fi

if [ $BOARDS = 1 ]; then
	mkdir -p "$OUT/native"
	# Pi Zero W and BeagleBone Black: ARMv6 code with VFP runs on every 32-bit board.
	for t in "arm arm-linux-gnueabihf-gcc -marm -march=armv6 -mfpu=vfp -mfloat-abi=hard" "arm64 aarch64-linux-gnu-gcc"; do
		# shellcheck disable=SC2086
		set -- $t
		arch=$1 cc=$2; shift 2
		if ! command -v "$cc" >/dev/null 2>&1; then
			echo "build-native: $cc missing (apt-get install gcc-${cc%-gcc}): no $arch addon" >&2; exit 1
		fi
		cc_to "$cc" "$OUT/native/lunbox-fast-linux-$arch.node" "$@"
		# A division by a run-time value pulls in libgcc's helpers, built for ARMv7 (Thumb-2):
		# a Pi Zero would die of SIGILL. The source avoids them; check it stayed so.
		if [ "$arch" = arm ] && command -v arm-linux-gnueabihf-readelf >/dev/null &&
			! arm-linux-gnueabihf-readelf -A "$OUT/native/lunbox-fast-linux-arm.node" | grep -q 'Tag_CPU_arch: v6$'; then
			echo "build-native: the arm build is not ARMv6 code (a libgcc helper crept in?)" >&2; exit 1
		fi
		echo "build-native: $OUT/native/lunbox-fast-linux-$arch.node"
	done
fi
