#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: live changes of the USB gadget from the board's shell
# (`lunbox shell --control PATH -c ...`) while the same kernel's usb-storage driver uses it. A
# USB host learns the LUN count at enumeration, so each change rebuilds the gadget: the host
# sees the device leave and come back (a new SCSI host number) with the new LUN set.
#   1. lunbox starts with one USB disk (LUN 0), the ACM console on ttyGS0 and a control socket;
#      the host sees /dev/sdX; 4 MiB of random data written to it
#   2. the shell creates a file backstore (no reconnect) and adds it as USB LUN 1: the shell
#      says the host sees the device reconnect; the host sees /dev/sdY (32 MiB) beside the disk,
#      whose data is intact; data written to sdY reads back
#   3. the console on /dev/ttyACM0 answers again after the rebuild (the board let go of ttyGS0)
#   4. a gadget string changed live: the host reads the new product string
#   5. a setting of the exported disk changed (vendor): the host sees the new INQUIRY, same data
#   6. a UDC that does not exist: refused with both the cause and "the previous gadget is back";
#      the disk comes back readable
#   7. LUN 1 deleted: /dev/sdY goes away, LUN 0 stays readable, data intact
#   8. the kernel engine (--usb-engine kernel): LUN 1 added live (lun.1 in configfs, /dev/sdY),
#      then deleted again, LUN 0 data intact
#   9. SIGTERM: exit 0, gadget gone
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-usb-live: N passed, M failed" at the end.
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-usb-live.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	lunbox_stop TERM
	echo "guest-usb-live: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}
CTL=/tmp/lunbox-live.sock
# lbshell CMD: one command in the running daemon's shell (bounded: a rebuild must not hang)
lbshell() { timeout 120 node "$LUNBOX_JS" shell --control $CTL -c "$1" >/tmp/shell.txt 2>&1; rc=$?; sed 's/^/  shell: /' /tmp/shell.txt; return $rc; }
# sd_at VENDOR LUN [NOT_DEVNUM]: wait for the /dev/sdX of SCSI LUN whose vendor is VENDOR, on a
# USB device whose device number is not NOT_DEVNUM (each enumeration gets a new number; SCSI
# host numbers are reused); sets DEV and USBN (its USB device number)
sd_at() {
	DEV=; USBN=; i=0
	while [ $i -lt 300 ]; do
		for b in /sys/block/sd*; do
			[ -e "$b/device/vendor" ] || continue
			[ "$(tr -d ' ' <"$b/device/vendor")" = "$1" ] || continue
			p=$(readlink -f "$b/device") # .../1-1/1-1:1.0/hostH/targetH:0:0/H:C:T:L
			[ "${p##*:}" = "$2" ] || continue
			n=$(cat "$(dirname "${p%%/host*}")/devnum" 2>/dev/null)
			[ -n "${3:-}" ] && [ "$n" = "$3" ] && continue
			if [ -b "/dev/${b##*/}" ] && [ "$(cat "$b/size")" != 0 ]; then DEV=${b##*/}; USBN=$n; return 0; fi
		done
		i=$((i + 1)); sleep 0.1
	done
	return 1
}
# no_lun LUN: wait until no lunbox disk (any vendor on a usb-storage host) has that LUN
no_lun() {
	i=0
	while [ $i -lt 300 ]; do
		found=
		for b in /sys/block/sd*; do
			[ -e "$b/device" ] || continue
			addr=$(basename "$(readlink -f "$b/device")")
			[ "${addr##*:}" = "$1" ] && found=1
		done
		[ -z "$found" ] && return 0
		i=$((i + 1)); sleep 0.1
	done
	return 1
}
sum4() { dd if=/dev/$1 bs=1M count=4 iflag=direct status=none | sha256sum | cut -d' ' -f1; }
usbdev() { for u in /sys/bus/usb/devices/*; do [ "$(cat "$u/serial" 2>/dev/null)" = "$1" ] && { echo "$u"; return 0; }; done; return 1; }

usb_modules
mkdir -p /mnt/store
mount -t tmpfs -o size=300M tmpfs /mnt/store
lunbox_bundle || { fail "dist/lunbox.js present"; finish; }

# --- 1. one disk ---------------------------------------------------------------------------
if lunbox_start --backstore file:/mnt/store/disk0.img:64M --acm --console /dev/ttyGS0 --serial LUNBOXLIVE1 --control $CTL; then
	pass "lunbox started (one USB disk, ACM console, control socket)"
else
	fail "lunbox started"; finish
fi
if sd_at LUNBOX 0; then pass "the host sees /dev/$DEV (LUN 0, USB device number $USBN)"; else fail "the host sees a /dev/sdX"; dmesg | tail -n 30; cat "$LUNBOX_LOG"; finish; fi
H0=$USBN
dd if=/dev/urandom of=/tmp/rand bs=1M count=4 status=none
WANT=$(sha256sum </tmp/rand | cut -d' ' -f1)
check "4 MiB written to /dev/$DEV" dd if=/tmp/rand of=/dev/$DEV bs=1M oflag=direct conv=fsync status=none
check "and read back" [ "$(sum4 $DEV)" = "$WANT" ]
i=0; while [ ! -e /dev/ttyACM0 ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
timeout 60 node "$LUNBOX_JS" console -c "ls /usb" /dev/ttyACM0 >/tmp/console.txt 2>&1; crc=$?
sed 's/^/  console: /' /tmp/console.txt | head -n 8
check "the shell answers on /dev/ttyACM0 before any change (exit $crc)" sh -c "[ $crc = 0 ] && grep -q 'lun0' /tmp/console.txt"

# --- 2. a second LUN, live -----------------------------------------------------------------
lbshell "/backstores/file create disk1 /mnt/store/disk1.img 32M"; rc=$?
check "a new backstore alone: no reconnect (exit $rc)" sh -c "[ $rc = 0 ] && ! grep -q reconnect /tmp/shell.txt"
lbshell "/usb/luns create lun=1 backstore=disk1"; rc=$?
check "/usb/luns create lun=1 backstore=disk1 (exit $rc): the shell says the host sees the device reconnect" \
	sh -c "[ $rc = 0 ] && grep -q '^created USB lun1 -> disk1' /tmp/shell.txt && grep -q 'note: usb: the USB host sees the device disconnect and reconnect with LUN 0 (file0), LUN 1 (disk1)' /tmp/shell.txt"
if sd_at LUNBOX 1 "$H0"; then pass "the host sees a second disk /dev/$DEV (LUN 1)"; else fail "the host sees LUN 1"; dmesg | tail -n 30; tail -n 20 "$LUNBOX_LOG"; finish; fi
SDY=$DEV; H1=$USBN
check "it is the new backstore: 32 MiB" [ "$(blockdev --getsize64 /dev/$SDY)" = 33554432 ]
check "the device was re-enumerated (USB device number $H0 -> $H1)" [ "$H1" != "$H0" ]
if sd_at LUNBOX 0 "$H0"; then pass "LUN 0 is back as /dev/$DEV beside it"; else fail "LUN 0 beside LUN 1"; finish; fi
SDX=$DEV
check "the first disk's data is intact" [ "$(sum4 $SDX)" = "$WANT" ]
dd if=/dev/urandom of=/tmp/rand1 bs=1M count=1 status=none
dd if=/tmp/rand1 of=/dev/$SDY bs=1M oflag=direct conv=fsync status=none
check "1 MiB written to /dev/$SDY reads back" sh -c "[ \"\$(dd if=/dev/$SDY bs=1M count=1 iflag=direct status=none | sha256sum)\" = \"\$(sha256sum </tmp/rand1)\" ]"
check "and is in disk1's file" cmp -s -n 1048576 /tmp/rand1 /mnt/store/disk1.img

# --- 3. the console after the rebuild --------------------------------------------------------
grep -q 'did not finish within' "$LUNBOX_LOG" && say "lunbox warned: $(grep 'did not finish within' "$LUNBOX_LOG" | head -n 1)"
i=0; while [ ! -e /dev/ttyACM0 ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
timeout 60 node "$LUNBOX_JS" console -c "ls /usb" /dev/ttyACM0 >/tmp/console.txt 2>&1; crc=$?
sed 's/^/  console: /' /tmp/console.txt | head -n 8
check "the shell answers on /dev/ttyACM0 after the rebuild, with LUN 1 listed (exit $crc)" \
	sh -c "[ $crc = 0 ] && grep -q 'lun1 .*disk1' /tmp/console.txt"

# --- 4. a gadget string -------------------------------------------------------------------
lbshell "/usb/gadget set attribute product=LiveDisk"; rc=$?
check "/usb/gadget set attribute product=LiveDisk (exit $rc), with the reconnect note" sh -c "[ $rc = 0 ] && grep -q 'reconnect .*gadget product \"LiveDisk\"' /tmp/shell.txt"
sd_at LUNBOX 0 "$H1" && H2=$USBN
U=$(usbdev LUNBOXLIVE1)
check "the host reads the new product string ($(cat "$U/product" 2>/dev/null))" [ "$(cat "$U/product" 2>/dev/null)" = LiveDisk ]

# --- 5. a setting of the exported disk ------------------------------------------------------
lbshell "/backstores/file/file0 set attribute vendor=ACME"; rc=$?
check "/backstores/file/file0 set attribute vendor=ACME (exit $rc): file0 (LUN 0) reopened, host reconnects" \
	sh -c "[ $rc = 0 ] && grep -q 'backstore file0 (LUN 0) reopened with new settings' /tmp/shell.txt"
if sd_at ACME 0 "${H2:-$H1}"; then pass "the host sees vendor ACME on /dev/$DEV"; else fail "the host sees vendor ACME"; tail -n 20 "$LUNBOX_LOG"; finish; fi
SDX=$DEV; H3=$USBN
check "same data under the new INQUIRY" [ "$(sum4 $SDX)" = "$WANT" ]

# --- 6. a bad change is refused, the previous gadget comes back --------------------------------
lbshell "/usb/gadget set attribute udc=nope.0"; rc=$?
check "udc=nope.0 refused (exit $rc) naming the UDC and that the previous gadget is back" \
	sh -c "[ $rc = 1 ] && grep -q 'did not start: .*nope.0' /tmp/shell.txt && grep -q 'Nothing was changed: the previous gadget is back with LUN 0 (file0), LUN 1 (disk1)' /tmp/shell.txt"
if sd_at ACME 0 "$H3"; then pass "the disk is back as /dev/$DEV"; else fail "the disk is back after the refused change"; tail -n 20 "$LUNBOX_LOG"; finish; fi
SDX=$DEV; H4=$USBN
check "and reads the same data" [ "$(sum4 $SDX)" = "$WANT" ]
lbshell "/usb/gadget get attribute udc"
check "the shell's config kept the working UDC" sh -c "! grep -q nope /tmp/shell.txt"

# --- 7. LUN 1 deleted -------------------------------------------------------------------------
lbshell "/usb/luns delete lun1"; rc=$?
check "/usb/luns delete lun1 (exit $rc), with the reconnect note" sh -c "[ $rc = 0 ] && grep -q 'reconnect with LUN 0 (file0) (LUN 1 (disk1) removed)' /tmp/shell.txt"
if sd_at ACME 0 "$H4"; then pass "LUN 0 stays: /dev/$DEV on the device enumerated anew"; else fail "LUN 0 stays after LUN 1 is deleted"; finish; fi
sleep 1
check "LUN 1 is gone from the host" no_lun 1
check "LUN 0 readable, data intact" [ "$(sum4 $DEV)" = "$WANT" ]
sed -n 's/^.*live change: /  log: /p' "$LUNBOX_LOG" | head -n 20

lunbox_stop TERM
check "SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
check "SIGTERM: gadget removed" [ ! -e /sys/kernel/config/usb_gadget/lunbox ]

# --- 8. the kernel engine -----------------------------------------------------------------------
if lunbox_start --usb-engine kernel --backstore file:/mnt/store/k0.img:32M --serial LUNBOXLIVE2 --control $CTL; then
	pass "lunbox started with --usb-engine kernel"
else
	fail "lunbox started with --usb-engine kernel"; finish
fi
if sd_at LUNBOX 0; then pass "kernel engine: the host sees /dev/$DEV"; else fail "kernel engine: /dev/sdX"; finish; fi
K0=$USBN
dd if=/tmp/rand of=/dev/$DEV bs=1M oflag=direct conv=fsync status=none
lbshell "/backstores/file create k1 /mnt/store/k1.img 16M" >/dev/null
lbshell "/usb/luns create lun=1 backstore=k1"; rc=$?
check "kernel engine: LUN 1 added live (exit $rc)" sh -c "[ $rc = 0 ] && grep -q 'reconnect with LUN 0 (file0), LUN 1 (k1)' /tmp/shell.txt"
check "kernel engine: lun.1 backs onto k1.img" sh -c "[ \"\$(cat /sys/kernel/config/usb_gadget/lunbox/functions/mass_storage.lunbox/lun.1/file)\" = /mnt/store/k1.img ]"
if sd_at LUNBOX 1 "$K0"; then pass "kernel engine: the host sees LUN 1 as /dev/$DEV"; else fail "kernel engine: LUN 1 seen"; finish; fi
K1=$USBN
check "kernel engine: LUN 1 is k1's 16 MiB" [ "$(blockdev --getsize64 /dev/$DEV)" = 16777216 ]
if sd_at LUNBOX 0 "$K0"; then check "kernel engine: LUN 0 data intact" [ "$(sum4 $DEV)" = "$WANT" ]; else fail "kernel engine: LUN 0 beside LUN 1"; fi
lbshell "/usb/luns delete lun1"; rc=$?
check "kernel engine: LUN 1 deleted (exit $rc)" [ $rc = 0 ]
if sd_at LUNBOX 0 "$K1"; then check "kernel engine: LUN 0 readable, data intact" [ "$(sum4 $DEV)" = "$WANT" ]; else fail "kernel engine: LUN 0 stays"; fi
sleep 1
check "kernel engine: LUN 1 gone from the host" no_lun 1

# --- 9. clean stop -------------------------------------------------------------------------
lunbox_stop TERM
check "SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
check "SIGTERM: gadget removed" [ ! -e /sys/kernel/config/usb_gadget/lunbox ]
finish
