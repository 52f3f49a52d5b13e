#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: commands the host abandons midway with a
# Bulk-Only Mass Storage Reset. A host resets the device when a command takes too long (Linux
# after 30 s, Windows sooner); whatever the abandoned command had queued must never come out
# as the next command's data or CSW.
#   1. lunbox serves a 64 MiB file of random data (LUN 0) on dummy_hcd
#   2. for each path in LOOPS, scripts/vm/bot-abandon.js (libusb, usb-storage detached
#      meanwhile): READs of 120 KiB abandoned after 0, 512, 16 KiB, 64 KiB and all of their data
#      (the CSW not taken), WRITEs abandoned after 0, 16 KiB and 96 KiB of data-out; after each,
#      Reset Recovery, then READs of other blocks must return exactly the medium's data and
#      their own CSW, with the data-in request queued together with the CBW (so anything left
#      on bulk-IN would be taken at once); a whole WRITE afterwards lands and reads back
#   3. usb-storage takes the device back; /dev/sdX reads the medium
# LOOPS picks the paths (default: c c-blocking js core, all of them, as the test command runs):
#   c     the C loop: the main thread cancels its queued bulk-IN requests before the reset
#         completes, and the next command is answered at once
#   c-blocking  the C loop without AIO (LUNBOX_USB_NO_AIO=1, as on a kernel without it):
#         blocking bulk-IN writes, refused resets as for js and core below
#   js    the JavaScript loop, and core, the core's own path (LUNBOX_USB_FASTPATH=0): their
#         bulk-IN writes are blocking f_fs writes, which userspace cannot take back. While one
#         is outstanding the Bulk-Only reset is refused (ep0 stalled), and the host resets the
#         port, as Linux's usb-storage does when the class reset fails (bot-abandon.js
#         --port-reset); the port reset ends the write, and the first command after it meets
#         the power-on unit attention (REQUEST SENSE, then sent again)
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-usb-abandon: N passed, M failed" at the end.
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-usb-abandon.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	lunbox_stop TERM
	echo "guest-usb-abandon: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}

usb_modules
lunbox_bundle || exit 1
[ -f "$REPO/node_modules/usb/package.json" ] || { fail "node-usb installed (node_modules/usb)"; finish; }
say "kernel $(uname -r)"
mkdir -p /mnt/abandon
mount -t tmpfs -o size=96M tmpfs /mnt/abandon
IMG=/mnt/abandon/disk.img
dd if=/dev/urandom of=$IMG bs=1M count=64 status=none

for loop in ${LOOPS:-c c-blocking js core}; do
	unset LUNBOX_USB_NATIVE LUNBOX_USB_FASTPATH LUNBOX_USB_NO_AIO
	if [ $loop = core ]; then
		export LUNBOX_USB_FASTPATH=0; L="core path"; OPT=--port-reset
	elif [ $loop = c-blocking ]; then
		[ -f "$REPO/dist/lunbox-fast.node" ] || { fail "C loop: dist/lunbox-fast.node is missing (npm run build with a C compiler)"; continue; }
		export LUNBOX_USB_NO_AIO=1; L="C loop without AIO"; OPT=--port-reset
	elif [ $loop = c ]; then
		[ -f "$REPO/dist/lunbox-fast.node" ] || { fail "C loop: dist/lunbox-fast.node is missing (npm run build with a C compiler)"; continue; }
		L="C loop"; OPT=
	else
		export LUNBOX_USB_NATIVE=0; L="JavaScript loop"; OPT=--port-reset
	fi
	say "$L"
	lunbox_start --backstore file:$IMG && wait_sd LUNBOX || { fail "$L: lunbox did not start"; cat "$LUNBOX_LOG"; continue; }
	case $loop in
	c|c-blocking) check "$L: the worker runs the C loop" grep -q 'serve loop in C' "$LUNBOX_LOG" ;;
	js) check "$L: the worker runs the JavaScript loop" grep -q 'runs its JavaScript loop' "$LUNBOX_LOG" ;;
	esac
	timeout 300 node "$REPO/scripts/vm/bot-abandon.js" $IMG $OPT >/tmp/abandon.txt 2>&1
	rc=$?
	sed "s/^\(PASS\|FAIL\): /\1: $L: /" /tmp/abandon.txt
	PASSED=$((PASSED + $(grep -c '^PASS: ' /tmp/abandon.txt)))
	FAILED=$((FAILED + $(grep -c '^FAIL: ' /tmp/abandon.txt)))
	check "$L: bot-abandon.js ran to the end (exit $rc)" [ $rc = 0 ]
	OLD=$DEV
	wait_no_sd "$OLD" >/dev/null 2>&1
	if wait_sd LUNBOX; then
		dd if=/dev/$DEV of=/tmp/back.bin bs=1M count=4 iflag=direct status=none
		dd if=$IMG of=/tmp/want.bin bs=1M count=4 status=none
		check "$L: usb-storage has the device back (/dev/$DEV) and reads the medium" cmp -s /tmp/back.bin /tmp/want.bin
	else
		fail "$L: usb-storage has the device back"
	fi
	check "$L: lunbox is still running" kill -0 "$LUNBOX_PID"
	grep -E 'warn|error' "$LUNBOX_LOG" | head -n 5
	lunbox_stop TERM
	check "$L: SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
	wait_no_sd "$DEV" >/dev/null 2>&1 || true
done
unset LUNBOX_USB_NATIVE LUNBOX_USB_FASTPATH LUNBOX_USB_NO_AIO
finish
