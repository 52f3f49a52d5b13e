#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: a backstore with bad blocks, served over USB mass
# storage on dummy_hcd and read by the same kernel's usb-storage driver. A disk that cannot
# read a block must say so (CHECK CONDITION, MEDIUM ERROR) at once: never leave the host to
# time the command out and reset the device, never hand it wrong data.
#   1. a 32 MiB device-mapper disk (random data on a loop device) whose 64 KiB at 16 MiB fail
#      (the "error" target); its read-ahead is 0, so a READ fails exactly on those blocks
#   2. for the fast path's C loop (when the addon is built) and its JavaScript loop in turn:
#      - a 4 KiB READ of a bad block: an I/O error, MEDIUM ERROR / UNRECOVERED READ ERROR
#        in the host's log
#      - a 120 KiB READ whose last 24 KiB are bad (in the C loop the first 96 KiB go out
#        from the mapping before the error shows): an I/O error; by SG_IO, its sense names
#        LBA 32768 in INFORMATION
#      - the 96 KiB before the bad blocks read back identical to the image
#      - no USB reset was needed for any of it, and the rest of the disk reads back identical
#      - a WRITE to a bad block: the SYNCHRONIZE CACHE that follows fails (sg_sync), a FUA
#        WRITE fails at once
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-usb-media: N passed, M failed" at the end.
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-usb-media.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	lunbox_stop TERM
	dmsetup remove lbxbad 2>/dev/null
	[ -n "${LOOPDEV:-}" ] && losetup -d "$LOOPDEV" 2>/dev/null
	echo "guest-usb-media: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}
# resets: how many USB resets the host has logged so far
resets() { dmesg | grep -c 'reset high-speed USB device'; }
# same FILE_A FILE_B: identical contents
same() { [ "$(sha256sum <"$1")" = "$(sha256sum <"$2")" ]; }

usb_modules
modprobe dm_mod || echo "modprobe dm_mod failed"
modprobe loop || echo "modprobe loop failed"
lunbox_bundle || exit 1
say "kernel $(uname -r)"

# --- 1. the disk with bad blocks -----------------------------------------------------------
mkdir -p /mnt/media
mount -t tmpfs -o size=80M tmpfs /mnt/media
IMG=/mnt/media/disk.img
dd if=/dev/urandom of=$IMG bs=1M count=32 status=none
LOOPDEV=$(losetup -f --show $IMG) || { fail "losetup"; finish; }
# sectors [32768, 32896): 64 KiB at 16 MiB that fail every read and write
printf '0 32768 linear %s 0\n32768 128 error\n32896 32640 linear %s 32896\n' "$LOOPDEV" "$LOOPDEV" | dmsetup create lbxbad ||
	{ fail "dmsetup create"; finish; }
dmsetup mknodes lbxbad
DM=/dev/mapper/lbxbad
DMDEV=$(basename "$(readlink -f /sys/dev/block/"$(dmsetup info -c --noheadings -o major,minor lbxbad | tr -d ' ')")")
# Without read-ahead a READ fails on the bad blocks only (with it, reads near them fail too:
# the kernel reads around them in one request).
echo 0 >/sys/block/$DMDEV/queue/read_ahead_kb
check "device-mapper disk with bad blocks: $DM ($DMDEV)" [ -b $DM ]
# the 96 KiB before the bad blocks, and the good stretch after them, from the image itself
dd if=$IMG of=/tmp/before.bin bs=1k skip=16288 count=96 status=none
dd if=$IMG of=/tmp/after.bin bs=1M skip=20 count=8 status=none

# --- 2. each loop --------------------------------------------------------------------------
for loop in c js; do
	if [ $loop = c ]; then
		[ -f "$REPO/dist/lunbox-fast.node" ] || { fail "C loop: dist/lunbox-fast.node is missing (npm run build with a C compiler)"; continue; }
		unset LUNBOX_USB_NATIVE; L="C loop"
	else
		export LUNBOX_USB_NATIVE=0; L="JavaScript loop"
	fi
	say "$L"
	lunbox_start --backstore block:$DM && wait_sd LUNBOX || { fail "$L: lunbox did not start"; cat "$LUNBOX_LOG"; continue; }
	if [ $loop = c ]; then
		check "$L: the worker runs the C loop" grep -q 'serve loop in C' "$LUNBOX_LOG"
	else
		check "$L: the worker runs the JavaScript loop" grep -q 'runs its JavaScript loop' "$LUNBOX_LOG"
	fi
	# A command the device does not answer would take the host 10 s (not 30) to reset.
	echo 10 >/sys/block/$DEV/device/timeout
	R0=$(resets)
	dmesg -C

	dd if=/dev/$DEV of=/dev/null bs=4k skip=4096 count=1 iflag=direct 2>/tmp/dd1.txt
	rc=$?
	check "$L: 4 KiB READ of a bad block fails (dd: $(tail -n 1 /tmp/dd1.txt | head -c 80))" [ $rc != 0 ]
	check "$L: the host logs MEDIUM ERROR, unrecovered read error" sh -c "dmesg | grep -q 'Sense Key : Medium Error' && dmesg | grep -q 'Unrecovered read error'"

	dmesg -C
	dd if=/dev/$DEV of=/tmp/got.bin bs=120k count=1 iflag=direct,skip_bytes skip=$((16288 * 1024)) 2>/tmp/dd2.txt
	rc=$?
	check "$L: 120 KiB READ whose last 24 KiB are bad fails (dd: $(tail -n 1 /tmp/dd2.txt | head -c 80))" [ $rc != 0 ]
	check "$L: the host logs it as unrecovered" sh -c "dmesg | grep -q 'Unrecovered read error'"
	# The same READ(10) (LBA 32576, 240 blocks) by SG_IO: its sense, without the block layer.
	sg_raw -r 122880 /dev/$DEV 28 00 00 00 7f 40 00 00 f0 00 >/tmp/raw.txt 2>&1
	check "$L: its sense names the first bad block: INFORMATION 32768 ($(grep -i 'info fld' /tmp/raw.txt | head -n 1 | head -c 60))" \
		sh -c "grep -qi 'Medium Error' /tmp/raw.txt && grep -qiE 'Info fld=0x0*8000 \[32768\]' /tmp/raw.txt"
	if [ $loop = c ]; then
		check "$L: it failed after 96 KiB had gone out, answered in the worker" grep -q 'READ failed at LBA 32768 after part of its data went out' "$LUNBOX_LOG"
	fi

	dd if=/dev/$DEV of=/tmp/got.bin bs=96k count=1 iflag=direct,skip_bytes skip=$((16288 * 1024)) status=none
	check "$L: the 96 KiB before the bad blocks read back identical" same /tmp/got.bin /tmp/before.bin
	dd if=/dev/$DEV of=/tmp/got.bin bs=1M skip=20 count=8 iflag=direct status=none
	check "$L: 8 MiB after the bad blocks read back identical" same /tmp/got.bin /tmp/after.bin
	R1=$(resets)
	check "$L: no USB reset was needed (host resets: $((R1 - R0)))" [ "$R1" = "$R0" ]

	# Writes land in the page cache (a volatile write cache, as the kernel's function has): a
	# bad block shows when it is flushed. Linux's usb-storage never sends SYNCHRONIZE CACHE
	# itself (it assumes write-through), so it is sent here; a FUA write fails at once.
	dd if=/dev/urandom of=/tmp/w.bin bs=4k count=1 status=none
	dd if=/tmp/w.bin of=/dev/$DEV bs=4k seek=4096 count=1 oflag=direct status=none
	sg_sync /dev/$DEV >/tmp/sync.txt 2>&1
	rc=$?
	check "$L: SYNCHRONIZE CACHE after a WRITE to a bad block fails ($(grep -i 'sense\|error' /tmp/sync.txt | head -n 1 | head -c 80))" [ $rc != 0 ]
	sg_dd if=/tmp/w.bin of=/dev/$DEV bs=512 seek=32770 count=8 oflag=fua >/tmp/fua.txt 2>&1
	rc=$?
	check "$L: a FUA WRITE to a bad block fails ($(grep -i 'sense\|error' /tmp/fua.txt | head -n 1 | head -c 80))" [ $rc != 0 ]
	dd if=/dev/$DEV of=/tmp/got.bin bs=1M skip=20 count=8 iflag=direct status=none
	check "$L: the disk still reads after it" same /tmp/got.bin /tmp/after.bin

	lunbox_stop TERM
	check "$L: SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
	wait_no_sd "$DEV" || true
done
unset LUNBOX_USB_NATIVE
finish
