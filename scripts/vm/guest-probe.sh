#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: `lunbox probe` (node-usb / libusb, the computer's
# side) against lunbox's own USB gadget on dummy_hcd, with the kernel's usb-storage driver bound.
#   1. lunbox starts: a 96 MiB disk (LUN 0), a CD-ROM (LUN 1), the ACM console → /dev/sdX
#   2. `lunbox probe` lists it (text and --json) with the bus address sysfs gives
#   3. `lunbox probe BUS:ADDR --read 32 --json`: INQUIRY, READ CAPACITY, a 32 MiB read test;
#      usb-storage is detached while it runs (/dev/sdX goes) and attached again after it
#      (/dev/sdX comes back and reads)
#   4. by serial number, text report; LUN 1 is the CD-ROM (2048-byte blocks); --read 0
#   5. bad input: an unknown device, a LUN that does not exist (the driver still comes back)
#   6. SIGTERM: lunbox exits 0 at once
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-probe: N passed, M failed" at the end.
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-probe.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	lunbox_stop TERM
	echo "guest-probe: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}
probe() { node "$LUNBOX_JS" probe "$@"; }
# json FILE EXPR: evaluate EXPR on the JSON in FILE (as j); prints it
json() { node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(eval(process.argv[2]))' "$1" "$2"; }
# The mass-storage interface's driver (empty: none bound).
msc_driver() { basename "$(readlink "/sys/bus/usb/devices/$USBDEV:1.0/driver" 2>/dev/null)" 2>/dev/null; }

usb_modules
mkdir -p /mnt/store
mount -t tmpfs -o size=200M tmpfs /mnt/store
lunbox_bundle || { fail "dist/lunbox.js present"; finish; }
[ -f "$REPO/node_modules/usb/package.json" ] || { fail "node-usb installed (node_modules/usb)"; finish; }

# --- 1. start --------------------------------------------------------------------------------
dd if=/dev/urandom of=/mnt/store/cd.iso bs=2048 count=300 status=none
if lunbox_start --backstore file:/mnt/store/disk.img:96M --cdrom /mnt/store/cd.iso --acm --serial LUNBOXPROBE1 -v; then
	pass "lunbox started (disk LUN 0, cdrom LUN 1, ACM)"
else
	fail "lunbox started"; finish
fi
if wait_sd LUNBOX; then pass "usb-storage attached /dev/$DEV"; else fail "usb-storage attached a /dev/sdX"; dmesg | tail -n 20; finish; fi
SD0=$DEV
USBDEV=
for u in /sys/bus/usb/devices/*; do [ "$(cat "$u/serial" 2>/dev/null)" = LUNBOXPROBE1 ] && USBDEV=${u##*/}; done
BUSADDR="$(cat /sys/bus/usb/devices/$USBDEV/busnum 2>/dev/null):$(cat /sys/bus/usb/devices/$USBDEV/devnum 2>/dev/null)"
say "usb device $USBDEV is $BUSADDR; interface 1.0 driver: $(msc_driver)"
check "interface $USBDEV:1.0 is bound to usb-storage" [ "$(msc_driver)" = usb-storage ]

# --- 2. list ---------------------------------------------------------------------------------
probe >/tmp/list.txt 2>&1; rc=$?
sed 's/^/  probe: /' /tmp/list.txt
check "probe lists it: $BUSADDR 1d6b:0104, serial, mass storage, serial console" \
	sh -c "[ $rc = 0 ] && grep -q '^$BUSADDR  1d6b:0104  lunbox lunbox storage  serial LUNBOXPROBE1  mass storage, serial console$' /tmp/list.txt"
probe --json >/tmp/list.json 2>/tmp/list.err; rc=$?
v=$(json /tmp/list.json '[j.length, j[0].vendorId.toString(16), j[0].massStorage, j[0].serial].join(" ")' 2>&1)
check "probe --json: one device, vendorId 0x1d6b, interface 0 is mass storage ($v)" [ "$rc $v" = '0 1 1d6b 0 LUNBOXPROBE1' ]

# --- 3. Bulk-Only Transport from userspace, the driver detached meanwhile -------------------
probe "$BUSADDR" --read 32 --json >/tmp/probe.json 2>/tmp/probe.err &
PP=$!
SEEN_DETACHED=0; SEEN_NO_SD=0
while kill -0 $PP 2>/dev/null; do
	# Detached from usb-storage: no driver, or usbfs (libusb's claim shows as that driver).
	[ "$(msc_driver)" != usb-storage ] && SEEN_DETACHED=1
	[ ! -e /sys/block/$SD0 ] && SEEN_NO_SD=1
	sleep 0.05
done
wait $PP; rc=$?
sed 's/^/  probe: /' /tmp/probe.err
check "probe $BUSADDR --read 32 --json: exit status 0" [ $rc = 0 ]
[ $rc = 0 ] && say "report: $(json /tmp/probe.json 'JSON.stringify({inquiry: j.inquiry, blocks: j.blocks, blockSize: j.blockSize, read: j.read, notes: j.notes})')"
check "usb-storage was detached while probe talked BOT (interface unbound: $SEEN_DETACHED, /dev/$SD0 gone: $SEEN_NO_SD)" sh -c "[ $SEEN_DETACHED = 1 ] && [ $SEEN_NO_SD = 1 ]"
v=$(json /tmp/probe.json '[j.inquiry.vendor, j.inquiry.product, j.inquiry.peripheralType, j.inquiry.removable].join(" ")' 2>&1)
check "INQUIRY: LUNBOX FILEIO, type 0 (disk), removable ($v)" [ "$v" = 'LUNBOX FILEIO 0 true' ]
v=$(json /tmp/probe.json '[j.blocks, j.blockSize, j.maxLun].join(" ")' 2>&1)
check "READ CAPACITY: 196608 blocks of 512 bytes; GET MAX LUN: 1 ($v)" [ "$v" = '196608 512 1' ]
v=$(json /tmp/probe.json 'j.read.bytes === 32 * 1048576 && j.read.mbPerSecond > 0.5 && j.read.mbPerSecond < 60' 2>&1)
check "read test: 32 MiB at a plausible rate" [ "$v" = true ]
v=$(json /tmp/probe.json 'j.notes.filter((n) => /kernel driver/.test(n)).length' 2>&1)
check "no note about giving the interface back to the kernel driver" [ "$v" = 0 ]
i=0; while [ "$(msc_driver)" != usb-storage ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
check "usb-storage attached again afterwards" [ "$(msc_driver)" = usb-storage ]
if wait_sd LUNBOX; then pass "/dev/$DEV is back"; else fail "/dev/sdX is back"; fi
check "/dev/$DEV reads (1 MiB, O_DIRECT)" dd if=/dev/$DEV of=/dev/null bs=1M count=1 iflag=direct status=none
check "sg_inq /dev/$DEV answers" sh -c "sg_inq /dev/$DEV >/dev/null 2>&1"

# --- 4. by serial, text; the CD-ROM LUN; no read test ---------------------------------------
probe LUNBOXPROBE1 --read 4 >/tmp/probe.txt 2>&1; rc=$?
sed 's/^/  probe: /' /tmp/probe.txt
check "probe LUNBOXPROBE1 (by serial): text report" sh -c "[ $rc = 0 ] && grep -q '^INQUIRY     LUNBOX FILEIO 0001  type disk, removable$' /tmp/probe.txt && grep -q '^capacity    196608 blocks x 512 bytes = 100663296 bytes (96.0 MiB)$' /tmp/probe.txt && grep -q '^read test   4.0 MiB in ' /tmp/probe.txt"
probe --test --lun 1 --read 0 >/tmp/cd.txt 2>&1; rc=$?
sed 's/^/  probe: /' /tmp/cd.txt
check "probe --lun 1 --read 0: the CD-ROM, 300 blocks of 2048 bytes, no read test" \
	sh -c "[ $rc = 0 ] && grep -q 'LUNs        0..1 (probed LUN 1)' /tmp/cd.txt && grep -q 'type CD-ROM, removable' /tmp/cd.txt && grep -q '^capacity    300 blocks x 2048 bytes' /tmp/cd.txt && ! grep -q 'read test' /tmp/cd.txt"

# --- 5. bad input ----------------------------------------------------------------------------
probe 9:99 >/tmp/bad.txt 2>&1; rc=$?
check "an unknown device: exit 1, names what there is ($(cat /tmp/bad.txt))" sh -c "[ $rc = 1 ] && grep -q 'no lunbox device 9:99; found: $BUSADDR (LUNBOXPROBE1)' /tmp/bad.txt"
probe --test --lun 5 >/tmp/bad.txt 2>&1; rc=$?
check "a LUN that does not exist: exit 1 ($(cat /tmp/bad.txt))" sh -c "[ $rc = 1 ] && grep -q 'LUN 5 does not exist: the device has LUNs 0..1' /tmp/bad.txt"
i=0; while [ "$(msc_driver)" != usb-storage ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
check "usb-storage attached again after the failed probe" [ "$(msc_driver)" = usb-storage ]
check "and the disk is back" wait_sd LUNBOX

# --- 6. clean stop ---------------------------------------------------------------------------
t0=$(date +%s)
lunbox_stop TERM
check "SIGTERM after the probes: exit status 0 within 10 s (took $(($(date +%s) - t0)) s)" sh -c "[ '${LUNBOX_RC:-1}' = 0 ] && [ $(($(date +%s) - t0)) -le 10 ]"
[ "${LUNBOX_RC:-1}" = 0 ] || grep -v 'CBW\|scsi' "$LUNBOX_LOG" | tail -n 30
finish
