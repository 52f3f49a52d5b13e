#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: a lunbox CD-ROM LUN (MMC, an ISO image) over USB
# mass storage on dummy_hcd, checked with the same kernel's usb-storage + sr drivers.
#   1. an ISO made with xorriso (else genisoimage) from a few MiB of random files; lunbox
#      starts with a disk (LUN 0) and --cdrom ISO (LUN 1) → /dev/sdX and /dev/sr0 appear
#   2. INQUIRY type 05h, READ CAPACITY 2048-byte blocks, READ TOC, GET CONFIGURATION profile,
#      a WRITE(10) is refused
#   3. mount -t iso9660: every file reads back with the same sha256
#   4. while mounted the kernel holds PREVENT: START STOP UNIT eject is refused
#   5. unmounted: eject (LOEJ) → TEST UNIT READY 02/3A/02 (tray open), GESN tray open;
#      load (LOEJ+START) → UNIT ATTENTION 28/00, then ready; mount again: same sha256
#   6. the board's shell (lunbox shell -c over the control socket) swaps the ISO live: refused
#      while the host has it mounted (PREVENT), then the host mounts the new disc and reads its
#      files; set attribute path= swaps it back; both are medium changes on the same USB
#      device (no re-enumeration, unlike a change of the LUN set); eject shows the host an open tray
#   7. SIGTERM: /dev/sr0 gone
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-cdrom: N passed, M failed" at the end.
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-cdrom.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	umount /mnt/cd 2>/dev/null
	lunbox_stop TERM
	echo "guest-cdrom: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}
# hexof ARGS...: sg_raw data-in as one line of hex bytes
hexof() { sg_raw -b "$@" 2>/dev/null | od -An -tx1 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }
CTL=/tmp/lunbox-cd.sock
# lbshell CMD: one command in the running daemon's shell; its output in /tmp/shell.txt
lbshell() { node "$LUNBOX_JS" shell --control $CTL -c "$1" >/tmp/shell.txt 2>&1; rc=$?; cat /tmp/shell.txt >>/tmp/shell-all.txt; sed 's/^/  shell: /' /tmp/shell.txt; return $rc; }
: >/tmp/shell-all.txt

usb_modules
modprobe sr_mod || echo "modprobe sr_mod failed"
modprobe isofs || echo "modprobe isofs failed"
mkdir -p /mnt/store /mnt/cd
mount -t tmpfs -o size=200M tmpfs /mnt/store
lunbox_bundle || { fail "dist/lunbox.js present"; finish; }

# --- 1. ISO, start, enumerate ------------------------------------------------------------
SRC=/mnt/store/src; mkdir -p $SRC/sub
dd if=/dev/urandom of=$SRC/one.bin bs=1M count=3 status=none
dd if=/dev/urandom of=$SRC/sub/two.bin bs=1k count=1500 status=none
dd if=/dev/urandom of=$SRC/sub/small.bin bs=1 count=777 status=none
echo "hello from a lunbox cdrom" >$SRC/readme.txt
ISO=/mnt/store/a.iso
if command -v xorriso >/dev/null; then MK="xorriso -as mkisofs"; else MK=genisoimage; fi
check "ISO made ($MK)" sh -c "$MK -quiet -R -J -V LUNBOXCD -o $ISO $SRC >/dev/null 2>&1 && [ -s $ISO ]"
BLOCKS=$(($(stat -c %s $ISO) / 2048))
say "ISO: $BLOCKS blocks of 2048 bytes"
if lunbox_start --backstore file:/mnt/store/disk.img:64M --cdrom $ISO --serial LUNBOXCD01 --control $CTL; then pass "lunbox started (disk LUN 0, cdrom LUN 1)"; else fail "lunbox started"; finish; fi
if wait_sr LUNBOX; then pass "sr driver attached /dev/$SR"; else fail "sr driver attached a /dev/srN"; dmesg | tail -n 30; cat "$LUNBOX_LOG"; finish; fi
check "the disk LUN beside it is /dev/sdX" wait_sd LUNBOX
# The USB device as the host enumerated it: a disc change must not enumerate it again.
USBDEV=$(dirname "$(readlink -f /sys/block/$SR/device | sed 's|/host[0-9]*/.*||')")
DEVNUM=$(cat $USBDEV/devnum 2>/dev/null)
say "USB device $USBDEV, device number $DEVNUM"
# Opening /dev/srN makes sr check for media events (TEST UNIT READY + GESN), which consumes the
# unit attention and the media event: the tray checks below go through the sg node instead.
SG=/dev/$(ls /sys/block/$SR/device/scsi_generic 2>/dev/null | head -n 1)
say "/dev/$SR is $SG; events_poll_msecs $(cat /sys/block/$SR/events_poll_msecs 2>/dev/null), events: $(cat /sys/block/$SR/events 2>/dev/null)"
echo 0 >/sys/block/$SR/events_poll_msecs 2>/dev/null
dmesg | grep -E 'sr [0-9:]+|cdrom|Uniform' | tail -n 4 | sed 's/^/  dmesg: /'

# --- 2. SCSI answers ---------------------------------------------------------------------
sg_inq /dev/$SR >/tmp/inq.txt 2>&1
check "INQUIRY: peripheral device type cd/dvd, removable" sh -c "grep -qi 'device_type=5\|cd/dvd' /tmp/inq.txt && grep -q 'RMB=1' /tmp/inq.txt"
sg_readcap /dev/$SR >/tmp/cap.txt 2>&1
check "READ CAPACITY: $BLOCKS blocks of 2048 bytes" sh -c "grep -q 'Last LBA=$((BLOCKS - 1))' /tmp/cap.txt && grep -q 'block length=2048' /tmp/cap.txt"
TOC=$(hexof -r 20 /dev/$SR 43 00 00 00 00 00 00 00 14 00)
say "READ TOC: $TOC"
check "READ TOC format 0: track 1 at 0, lead-out AAh" sh -c "echo '$TOC' | grep -q '^00 12 01 01 00 14 01 00 00 00 00 00 00 14 aa 00'"
CONF=$(hexof -r 8 /dev/$SR 46 02 00 00 00 00 00 00 08 00)
check "GET CONFIGURATION: current profile CD-ROM 0008h ($CONF)" sh -c "echo '$CONF' | grep -q ' 00 08$'"
sg_raw -s 2048 -i /dev/zero /dev/$SR 2a 00 00 00 00 00 00 00 01 00 >/tmp/w.txt 2>&1
check "WRITE(10) refused: invalid command operation code" grep -qi 'invalid command operation code' /tmp/w.txt

# --- 3. mount and read back --------------------------------------------------------------
check "mount -t iso9660 /dev/$SR" mount -t iso9660 -o ro /dev/$SR /mnt/cd
sums $SRC >/tmp/want.txt
sums /mnt/cd >/tmp/got.txt 2>/dev/null
check "every file reads back identical ($(wc -l </tmp/want.txt) files, sha256)" cmp -s /tmp/want.txt /tmp/got.txt

# --- 4. PREVENT while mounted ------------------------------------------------------------
P2A=$(hexof -r 32 /dev/$SR 5a 00 2a 00 00 00 00 00 20 00)
say "mode page 2Ah while mounted: $P2A"
sg_start --eject /dev/$SR >/tmp/ej.txt 2>&1; rc=$?
sed 's/^/  sg_start: /' /tmp/ej.txt
check "mounted: the kernel's PREVENT shows in page 2Ah (LOCK STATE)" sh -c "echo '$P2A' | grep -q '2a 14 0b 00 50 00 2f'"
check "eject refused while mounted (PREVENT → ILLEGAL REQUEST)" sh -c "[ $rc != 0 ] && grep -qi 'illegal request' /tmp/ej.txt"
check "umount" umount /mnt/cd

# --- 5. eject, load ----------------------------------------------------------------------
check "eject (START STOP UNIT LOEJ)" sg_start --eject $SG
sg_raw $SG 00 00 00 00 00 00 >/tmp/tur.txt 2>&1
check "TEST UNIT READY: not ready, medium not present - tray open ($(grep -i 'sense:' /tmp/tur.txt | tr '\n' ' '))" grep -qi 'tray open' /tmp/tur.txt
GESN=$(hexof -r 8 $SG 4a 01 00 00 10 00 00 00 08 00)
check "GESN media class: MediaRemoval event, tray open, no medium present ($GESN)" sh -c "echo '$GESN' | grep -q '^00 06 04 10 03 01'"
check "load (START STOP UNIT LOEJ+START)" sg_start --load $SG
sg_raw $SG 00 00 00 00 00 00 >/tmp/tur.txt 2>&1
check "TEST UNIT READY after load: UNIT ATTENTION 28/00 ($(grep -i 'sense:' /tmp/tur.txt | tr '\n' ' '))" grep -qi 'ready change' /tmp/tur.txt
GESN=$(hexof -r 8 $SG 4a 01 00 00 10 00 00 00 08 00)
check "GESN media class after load: NewMedia, medium present ($GESN)" sh -c "echo '$GESN' | grep -q '^00 06 04 10 02 02'"
check "TEST UNIT READY then GOOD" sg_turs $SG
echo 3 >/proc/sys/vm/drop_caches
check "mount again after load" mount -t iso9660 -o ro /dev/$SR /mnt/cd
sums /mnt/cd >/tmp/got.txt 2>/dev/null
check "files identical after eject + load" cmp -s /tmp/want.txt /tmp/got.txt

# --- 6. the ISO swapped from the board's shell ----------------------------------------------
SRC2=/mnt/store/src2; mkdir -p $SRC2
dd if=/dev/urandom of=$SRC2/second.bin bs=1k count=2500 status=none
echo "the second disc" >$SRC2/which.txt
ISO2=/mnt/store/b.iso
check "second ISO made" sh -c "$MK -quiet -R -J -V LUNBOXCD2 -o $ISO2 $SRC2 >/dev/null 2>&1 && [ -s $ISO2 ]"
sums $SRC2 >/tmp/want2.txt
# Still mounted from step 5: the host holds PREVENT, the shell's change is refused.
lbshell "/usb/luns/lun1 changemedium $ISO2"; rc=$?
check "changemedium while the host has the disc mounted: refused (exit $rc), names PREVENT and force=true" \
	sh -c "[ $rc = 1 ] && grep -q 'locked the tray (PREVENT ALLOW MEDIUM REMOVAL' /tmp/shell.txt && grep -q 'force=true' /tmp/shell.txt"
echo 3 >/proc/sys/vm/drop_caches
sums /mnt/cd >/tmp/got.txt 2>/dev/null
check "the mounted disc still reads" cmp -s /tmp/want.txt /tmp/got.txt
umount /mnt/cd
lbshell "/usb/luns/lun1 changemedium $ISO2"; rc=$?
check "changemedium $ISO2 from the shell (exit $rc)" sh -c "[ $rc = 0 ] && grep -q 'inserted in cdrom0' /tmp/shell.txt"
check "the host mounts the new disc" mount -t iso9660 -o ro /dev/$SR /mnt/cd
check "the host sees the new disc's size ($(($(cat /sys/block/$SR/size) * 512)) bytes)" [ "$(($(cat /sys/block/$SR/size) * 512))" = "$(stat -c %s $ISO2)" ]
sums /mnt/cd >/tmp/got2.txt 2>/dev/null
check "the host reads the new disc's files ($(wc -l </tmp/want2.txt) files, sha256)" cmp -s /tmp/want2.txt /tmp/got2.txt
umount /mnt/cd
# The same change through the config: set attribute path= is a disc change, not a new LUN.
lbshell "/backstores/file/cdrom0 set attribute path=$ISO"; rc=$?
check "set attribute path= swaps the disc back (exit $rc)" [ $rc = 0 ]
check "the host mounts the first disc again" mount -t iso9660 -o ro /dev/$SR /mnt/cd
sums /mnt/cd >/tmp/got.txt 2>/dev/null
check "its files are the first disc's" cmp -s /tmp/want.txt /tmp/got.txt
umount /mnt/cd
check "the disc changes were medium changes: the same USB device (number $DEVNUM), no reconnect" \
	sh -c "[ \"\$(cat $USBDEV/devnum 2>/dev/null)\" = '$DEVNUM' ] && ! grep -q reconnect /tmp/shell-all.txt"
lbshell "ls /backstores/file"
check "ls shows the disc in the drive" grep -q "cdrom0 .*cdrom $ISO activated" /tmp/shell.txt
lbshell "/usb/luns/lun1 eject"; rc=$?
check "eject from the shell (exit $rc)" [ $rc = 0 ]
sg_raw $SG 00 00 00 00 00 00 >/tmp/tur.txt 2>&1
check "the host sees an open tray ($(grep -i 'sense:' /tmp/tur.txt | tr '\n' ' '))" grep -qi 'tray open' /tmp/tur.txt

# --- 7. clean stop -----------------------------------------------------------------------
lunbox_stop TERM
check "SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
i=0; while [ -e /sys/block/$SR ] && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
check "SIGTERM: /dev/$SR gone" [ ! -e /sys/block/$SR ]
finish
