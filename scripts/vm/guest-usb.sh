#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: lunbox's USB mass storage (FunctionFS + Bulk-Only
# Transport) on dummy_hcd, checked with the same kernel's usb-storage driver.
#   1. lunbox starts (gadget ffs.lunbox + acm.usb0, file backstore) → /dev/sdX appears
#   2. sg_inq / sg_readcap answer; /dev/ttyACM0 appears and carries bytes to /dev/ttyGS0
#   3. mkfs.vfat, mount, copy 100 MiB of random data, unmount, remount: same sha256
#   4. sg_reset -d (Bulk-Only Mass Storage Reset) and sg_reset -b (USB port reset,
#      re-enumeration) are survived: sg_inq answers, the file still reads back
#   5. kill -9, start again (leftover gadget + mount are removed): the data is still there
#   6. SIGTERM: gadget, mount point and /dev/sdX are gone
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-usb: N passed, M failed" at the end;
# exits 0 only when nothing failed.
#   USB_SPEED=high|super  dummy_hcd speed (VM_PASSENV=USB_SPEED)
#   LUNBOX_CMD="node /x/dist/lunbox.js serve --usb"  another lunbox (default: this repo's dist/lunbox.js)
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-usb.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	lunbox_stop TERM
	echo "guest-usb: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}

usb_modules
say "kernel $(uname -r), UDCs: $(ls /sys/class/udc | tr '\n' ' ')"
mkdir -p /mnt/store /mnt/fat
mount -t tmpfs -o size=300M tmpfs /mnt/store
IMG=/mnt/store/disk.img
lunbox_bundle || { fail "dist/lunbox.js present"; finish; }

# --- 1. start, enumerate ---------------------------------------------------------------
t0=$(date +%s.%N)
if lunbox_start --backstore file:$IMG:256M --acm --serial LUNBOX0001; then pass "lunbox USB target started"; else fail "lunbox USB target started"; finish; fi
sed 's/^/  lunbox: /' "$LUNBOX_LOG"
if wait_sd LUNBOX; then
	pass "usb-storage attached /dev/$DEV ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s after start)"
else
	fail "usb-storage attached a /dev/sdX"; dmesg | tail -n 30; cat "$LUNBOX_LOG"; finish
fi
for u in /sys/bus/usb/devices/*; do
	[ "$(cat $u/serial 2>/dev/null)" = LUNBOX0001 ] || continue
	say "usb device ${u##*/}: $(cat $u/idVendor):$(cat $u/idProduct) speed=$(cat $u/speed)Mb/s" \
		"'$(cat $u/manufacturer 2>/dev/null)' '$(cat $u/product 2>/dev/null)'"
	for i in $u/${u##*/}:*; do say "  interface ${i##*/}: class $(cat $i/bInterfaceClass)/$(cat $i/bInterfaceSubClass)/$(cat $i/bInterfaceProtocol) driver=$(basename "$(readlink $i/driver 2>/dev/null)" 2>/dev/null)"; done
done
say "/dev/$DEV: $(cat /sys/block/$DEV/device/vendor) $(cat /sys/block/$DEV/device/model) $(($(cat /sys/block/$DEV/size) / 2048)) MiB, max_sectors_kb=$(cat /sys/block/$DEV/queue/max_sectors_kb)"

# --- 2. SCSI answers, ACM ----------------------------------------------------------------
sg_inq /dev/$DEV >/tmp/inq.txt 2>&1; rc=$?
sed -n 's/^ *\(Vendor identification\|Product identification\|Product revision level\|Unit serial number\|PQual\).*/  &/p' /tmp/inq.txt
check "sg_inq answers (vendor LUNBOX)" sh -c "[ $rc = 0 ] && grep -q 'Vendor identification: LUNBOX' /tmp/inq.txt"
sg_readcap /dev/$DEV >/tmp/cap.txt 2>&1; rc=$?
sed -n 's/^ *\(Last LBA\|Logical block length\|Device size\).*/  &/p' /tmp/cap.txt
check "sg_readcap: 524288 blocks of 512 bytes" sh -c "[ $rc = 0 ] && grep -q 'Last LBA=524287' /tmp/cap.txt && grep -q 'block length=512' /tmp/cap.txt"
sg_readcap -l /dev/$DEV >/dev/null 2>&1 && pass "sg_readcap --long (READ CAPACITY 16)" || fail "sg_readcap --long (READ CAPACITY 16)"
sg_vpd -p sn /dev/$DEV 2>/dev/null | sed -n 's/^ *Unit serial number: */  serial: /p'
sg_turs /dev/$DEV >/dev/null 2>&1 && pass "TEST UNIT READY" || fail "TEST UNIT READY"

i=0; while [ ! -e /dev/ttyACM0 ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
if [ -e /dev/ttyACM0 ] && [ -e /dev/ttyGS0 ]; then
	pass "ACM console: /dev/ttyACM0 (host) and /dev/ttyGS0 (gadget) present"
	stty -F /dev/ttyACM0 raw -echo 2>/dev/null; stty -F /dev/ttyGS0 raw -echo 2>/dev/null
	cat /dev/ttyACM0 >/tmp/acm.out 2>/dev/null &
	CATPID=$!
	sleep 0.3
	echo "hello over acm" >/dev/ttyGS0
	sleep 0.5
	kill $CATPID 2>/dev/null; wait $CATPID 2>/dev/null
	check "ACM carries bytes gadget→host" grep -q "hello over acm" /tmp/acm.out
else
	fail "ACM console: /dev/ttyACM0 + /dev/ttyGS0 (have: $(ls /dev/ttyACM* /dev/ttyGS* 2>/dev/null | tr '\n' ' '))"
fi

# --- 3. filesystem round trip ----------------------------------------------------------
dd if=/dev/urandom of=/tmp/random.bin bs=1M count=100 status=none
SUM=$(sha256sum </tmp/random.bin | cut -d' ' -f1)
check "mkfs.vfat /dev/$DEV" sh -c "mkfs.vfat -I /dev/$DEV >/dev/null"
check "mount vfat" mount -t vfat /dev/$DEV /mnt/fat
t0=$(date +%s.%N)
check "copy 100 MiB of random data + sync" sh -c "cp /tmp/random.bin /mnt/fat/random.bin && sync"
say "copy+sync took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
check "umount" umount /mnt/fat
echo 3 >/proc/sys/vm/drop_caches
blockdev --flushbufs /dev/$DEV 2>/dev/null
check "remount" mount -t vfat -o ro /dev/$DEV /mnt/fat
GOT=$(sha256sum </mnt/fat/random.bin 2>/dev/null | cut -d' ' -f1)
check "sha256 after remount matches ($SUM)" [ "$GOT" = "$SUM" ]
umount /mnt/fat

# --- 4. resets ---------------------------------------------------------------------------
RESETS_BEFORE=$(dmesg | grep -c 'reset high-speed USB device\|reset super-speed USB device')
check "sg_reset -d (device reset: Bulk-Only Mass Storage Reset)" sg_reset -d /dev/$DEV
sleep 0.5
check "sg_inq after device reset" sh -c "sg_inq /dev/$DEV >/dev/null 2>&1"
check "sg_reset -b (bus reset: USB port reset)" sg_reset -b /dev/$DEV
sleep 1
RESETS_AFTER=$(dmesg | grep -c 'reset high-speed USB device\|reset super-speed USB device')
say "USB port resets seen by the host: $((RESETS_AFTER - RESETS_BEFORE))"
check "sg_inq after bus reset" sh -c "sg_inq /dev/$DEV >/dev/null 2>&1"
echo 3 >/proc/sys/vm/drop_caches
mount -t vfat -o ro /dev/$DEV /mnt/fat && GOT=$(sha256sum </mnt/fat/random.bin | cut -d' ' -f1) || GOT=none
umount /mnt/fat 2>/dev/null
check "data intact after resets" [ "$GOT" = "$SUM" ]
dmesg | grep -iE 'usb 1-1|usb-storage|sd [0-9:]+: \[sd' | grep -viE 'Product|Manufacturer|SerialNumber|New USB device' | tail -n 8 | sed 's/^/  dmesg: /'

# --- 5. crash and restart ---------------------------------------------------------------
OLD=$DEV
lunbox_stop KILL
say "lunbox killed (-9): gadget left: $(ls /sys/kernel/config/usb_gadget | tr '\n' ' ') mounts: $(grep -c functionfs /proc/mounts)"
sleep 0.5
if lunbox_start --backstore file:$IMG --acm --serial LUNBOX0001; then pass "restart after kill -9 (leftovers removed)"; else fail "restart after kill -9"; finish; fi
grep -i 'left by an earlier run' "$LUNBOX_LOG" | sed 's/^/  lunbox: /'
if wait_sd LUNBOX; then
	mount -t vfat -o ro /dev/$DEV /mnt/fat && GOT=$(sha256sum </mnt/fat/random.bin | cut -d' ' -f1) || GOT=none
	umount /mnt/fat 2>/dev/null
	check "data intact after restart (/dev/$OLD → /dev/$DEV)" [ "$GOT" = "$SUM" ]
else
	fail "disk back after restart"
fi

# --- 6. clean stop -----------------------------------------------------------------------
lunbox_stop TERM
check "SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
grep 'fast path served' "$LUNBOX_LOG" | sed 's/^/  lunbox: /'
check "the READs were served by the fast path's worker thread" grep -Eq 'fast path served [1-9][0-9]* READs' "$LUNBOX_LOG"
grep -E 'serve loop in C|JavaScript loop' "$LUNBOX_LOG" | head -n 1 | sed 's/^/  lunbox: /'
check "the worker ran the C loop (dist/lunbox-fast.node; scripts/build-native.sh)" grep -q 'runs its serve loop in C' "$LUNBOX_LOG"
check "SIGTERM: gadget removed" [ ! -e /sys/kernel/config/usb_gadget/lunbox ]
check "SIGTERM: FunctionFS unmounted" sh -c "! grep -q functionfs /proc/mounts"
check "SIGTERM: /dev/$DEV gone" wait_no_sd $DEV
tail -n 3 "$LUNBOX_LOG" | sed 's/^/  lunbox: /'
finish
