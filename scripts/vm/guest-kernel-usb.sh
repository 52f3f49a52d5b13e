#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: the kernel engine for USB (usb.engine 'kernel',
# `serve --usb-engine kernel`): lunbox builds the gadget with the kernel's mass_storage
# function instead of its FunctionFS one, checked with the same kernel's usb-storage + sr.
#   1. start with a file disk (LUN 0), --cdrom ISO (LUN 1) and ACM: the gadget has
#      mass_storage.lunbox, no ffs.* and no FunctionFS mount; /dev/sdX, /dev/sr0, /dev/ttyACM0
#   2. INQUIRY names lunbox's vendor; the capacity is the file's
#   3. 8 MiB of random data written through /dev/sdX reads back, and is in lunbox's file
#   4. the ISO mounts and reads back identical; while mounted the shell's changemedium is
#      refused (the kernel enforces the host's PREVENT); unmounted, the shell swaps the disc
#      and the host reads the new one
#   5. SIGTERM: exit 0, the gadget and /dev/sdX are gone
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-kernel-usb: N passed, M failed".
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-kernel-usb.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	umount /mnt/cd 2>/dev/null
	lunbox_stop TERM
	echo "guest-kernel-usb: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}
CTL=/tmp/lunbox-k.sock
lbshell() { node "$LUNBOX_JS" shell --control $CTL -c "$1" >/tmp/shell.txt 2>&1; rc=$?; sed 's/^/  shell: /' /tmp/shell.txt; return $rc; }

usb_modules
modprobe sr_mod || echo "modprobe sr_mod failed"
modprobe isofs || echo "modprobe isofs failed"
mkdir -p /mnt/store /mnt/cd
mount -t tmpfs -o size=200M tmpfs /mnt/store
lunbox_bundle || { fail "dist/lunbox.js present"; finish; }

SRC=/mnt/store/src; mkdir -p $SRC
dd if=/dev/urandom of=$SRC/one.bin bs=1M count=2 status=none
echo "hello from the kernel engine" >$SRC/readme.txt
ISO=/mnt/store/a.iso
if command -v xorriso >/dev/null; then MK="xorriso -as mkisofs"; else MK=genisoimage; fi
check "ISO made ($MK)" sh -c "$MK -quiet -R -J -V LUNBOXK -o $ISO $SRC >/dev/null 2>&1 && [ -s $ISO ]"
IMG=/mnt/store/disk.img

# --- 1. start ------------------------------------------------------------------------------
if lunbox_start --usb-engine kernel --acm --backstore file:$IMG:64M --cdrom $ISO --serial LUNBOXK01 --control $CTL; then
	pass "lunbox started with --usb-engine kernel"
else
	fail "lunbox started with --usb-engine kernel"; finish
fi
G=/sys/kernel/config/usb_gadget/lunbox
check "gadget has the kernel's mass_storage.lunbox function" [ -d $G/functions/mass_storage.lunbox ]
check "no FunctionFS function and no functionfs mount" sh -c "! ls $G/functions | grep -q '^ffs\.' && ! grep -q ' functionfs ' /proc/mounts"
check "lun.0 backs onto lunbox's file" sh -c "[ \"\$(cat $G/functions/mass_storage.lunbox/lun.0/file)\" = $IMG ]"
check "lun.1 is a CD-ROM with the ISO" sh -c "[ \"\$(cat $G/functions/mass_storage.lunbox/lun.1/cdrom)\" = 1 ] && [ \"\$(cat $G/functions/mass_storage.lunbox/lun.1/file)\" = $ISO ]"
if wait_sd LUNBOX; then pass "usb-storage attached /dev/$DEV"; else fail "usb-storage attached a /dev/sdX"; dmesg | tail -n 20; cat "$LUNBOX_LOG"; finish; fi
check "sr driver attached the CD-ROM" wait_sr LUNBOX
i=0; while [ ! -e /dev/ttyACM0 ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
check "ACM console beside it: /dev/ttyACM0" [ -e /dev/ttyACM0 ]

# --- 2. what the host sees -----------------------------------------------------------------
sg_inq /dev/$DEV >/tmp/inq.txt 2>&1
check "INQUIRY vendor LUNBOX (lunbox's identity, kernel's engine)" grep -q 'Vendor identification: LUNBOX' /tmp/inq.txt
check "capacity 64 MiB" [ "$(blockdev --getsize64 /dev/$DEV)" = 67108864 ]

# --- 3. data -------------------------------------------------------------------------------
dd if=/dev/urandom of=/mnt/store/rand bs=1M count=8 status=none
dd if=/mnt/store/rand of=/dev/$DEV bs=1M oflag=direct status=none && sync
WANT=$(sha256sum </mnt/store/rand)
GOT=$(dd if=/dev/$DEV bs=1M count=8 iflag=direct status=none | sha256sum)
check "8 MiB written through /dev/$DEV read back identical" [ "$WANT" = "$GOT" ]
INFILE=$(dd if=$IMG bs=1M count=8 status=none | sha256sum)
check "the data is in lunbox's backing file" [ "$WANT" = "$INFILE" ]

# --- 4. the CD-ROM -------------------------------------------------------------------------
check "mount -t iso9660 /dev/$SR" mount -t iso9660 -o ro /dev/$SR /mnt/cd
sums $SRC >/tmp/want.txt
sums /mnt/cd >/tmp/got.txt 2>/dev/null
check "ISO files read back identical" cmp -s /tmp/want.txt /tmp/got.txt
SRC2=/mnt/store/src2; mkdir -p $SRC2
dd if=/dev/urandom of=$SRC2/second.bin bs=1k count=700 status=none
ISO2=/mnt/store/b.iso
$MK -quiet -R -J -V LUNBOXK2 -o $ISO2 $SRC2 >/dev/null 2>&1
sums $SRC2 >/tmp/want2.txt
lbshell "/usb/luns/lun1 changemedium $ISO2"; rc=$?
check "mounted: the shell's changemedium is refused by the kernel's PREVENT (exit $rc)" sh -c "[ $rc != 0 ] && grep -qi 'prevent' /tmp/shell.txt"
check "the kernel kept the first disc" sh -c "[ \"\$(cat $G/functions/mass_storage.lunbox/lun.1/file)\" = $ISO ]"
umount /mnt/cd
lbshell "/usb/luns/lun1 changemedium $ISO2"; rc=$?
check "unmounted: changemedium from the shell (exit $rc)" sh -c "[ $rc = 0 ] && [ \"\$(cat $G/functions/mass_storage.lunbox/lun.1/file)\" = $ISO2 ]"
echo 3 >/proc/sys/vm/drop_caches
i=0; until mount -t iso9660 -o ro /dev/$SR /mnt/cd 2>/dev/null || [ $i -ge 50 ]; do i=$((i + 1)); sleep 0.2; done
sums /mnt/cd >/tmp/got2.txt 2>/dev/null
check "the host reads the new disc's files" cmp -s /tmp/want2.txt /tmp/got2.txt
umount /mnt/cd

# --- 5. clean stop -------------------------------------------------------------------------
lunbox_stop TERM
check "SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
check "SIGTERM: gadget removed from configfs" [ ! -e $G ]
[ -e $G ] && { grep -v '^ *$' "$LUNBOX_LOG" | tail -n 8; find $G -maxdepth 3 | head -n 30; }
check "SIGTERM: /dev/$DEV gone" wait_no_sd $DEV
finish
