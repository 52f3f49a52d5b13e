#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: a board's first boot, apart from the CPU
# architecture. The rootfs overlay, the bundle and the serial console's runtime are installed
# as scripts/make-image installs them (rootfs/ copied over /, dist/lunbox.js as
# /usr/lib/lunbox/lunbox.js, serialport by scripts/stage-serialport into
# /usr/lib/lunbox/node_modules, with the linux-x64 prebuild where a board gets its ARM one),
# then lunbox.service's own lines run in the order systemd runs them (EnvironmentFile,
# ExecStartPre, ExecStart, then SIGTERM and ExecStopPost; PID 1 here is the VM harness, not
# systemd). The same kernel's host side must see:
#   1. the disk created on first start (one FAT partition labelled LUNBOX) as /dev/sdX, mountable;
#   2. the ACM port as /dev/ttyACM0, with the shell answering on it: `lunbox console -c "ls /"`
#      run on the host side prints the tree (the board's lunbox loads serialport from
#      /usr/lib/lunbox/node_modules);
#   3. the USB network: the computer's end (cdc_ncm, moved into its own network namespace)
#      gets 10.55.0.2 by DHCP and finds the iSCSI target of the default config on 10.55.0.1,
#      serving the second disk created on first start;
#   4. a stop that does not wait for the computer: SIGTERM while the host holds the console
#      open and reads nothing (the board's output backed up in ttyGS0) ends lunbox at once;
#   5. everything gone after the stop.
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-firstboot.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"
PID=
finish() {
	[ -n "$PID" ] && kill -TERM $PID 2>/dev/null && wait $PID 2>/dev/null
	echo "guest-firstboot: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}

usb_modules
modprobe cdc_ncm || echo "modprobe cdc_ncm failed"
modprobe usb_f_ncm || echo "modprobe usb_f_ncm failed"
# The NCM link's story (f_ncm's notifications, u_ether's open/close, cdc_ncm's carrier), printed
# if the computer's end gets no carrier. Needs CONFIG_DYNAMIC_DEBUG (Debian's kernel has it).
DDC=/sys/kernel/debug/dynamic_debug/control
for f in f_ncm.c u_ether.c cdc_ncm.c usbnet.c; do echo "file $f +pt" >$DDC 2>/dev/null; done
ncm_story() { dmesg | grep -E 'ncm|u_ether|usb0|cdc_ncm|usbnet|notify|carrier' | tail -n ${1:-40} | sed 's/^/  kernel: /'; }
[ -f "$REPO/dist/lunbox.js" ] || { fail "dist/lunbox.js present (npm run build)"; finish; }

# --- install, as make-image does ----------------------------------------------------------
cp -a "$REPO/rootfs/." / && install -m 0755 "$REPO/dist/lunbox.js" /usr/lib/lunbox/lunbox.js
check "overlay and bundle installed" test -x /usr/lib/lunbox/lunbox -a -f /etc/systemd/system/lunbox.service
NM=/usr/lib/lunbox/node_modules
PREBUILD=linux-x64/node.napi.glibc.node
rm -rf $NM
check "serial console runtime installed: serialport in $NM, $PREBUILD only" \
	sh -c "node \"$REPO/scripts/stage-serialport\" --from \"$REPO/node_modules\" --to $NM --prebuild $PREBUILD >/dev/null"
# make-image appends the Node it installed; this VM runs the host's node. The guest's /var is
# RAM: a small disk instead of half the free space.
{ echo "LUNBOX_NODE=$(command -v node)"; echo "LUNBOX_DISK_SIZE=128M"; } >>/etc/default/lunbox
UNIT=/etc/systemd/system/lunbox.service
unit_line() { sed -n "s/^$1=//p" "$UNIT" | head -n 1; }
set -a; . /etc/default/lunbox; set +a

# --- ExecStartPre: modules, stale gadgets, the disk -------------------------------------------
check "ExecStartPre: $(unit_line ExecStartPre)" sh -c "$(unit_line ExecStartPre)"
check "the disk was created on first start" test -s /var/lib/lunbox/disk0.img
check "the iSCSI disk was created on first start" test -s /var/lib/lunbox/net0.img

# --- ExecStart ----------------------------------------------------------------------------
$(unit_line ExecStart) >/tmp/firstboot.log 2>&1 &
PID=$!
if wait_sd lunbox 600; then pass "the computer sees the disk as /dev/$DEV"; else fail "disk seen by usb-storage"; cat /tmp/firstboot.log; finish; fi
i=0; while [ ! -b /dev/${DEV}1 ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
check "its partition is FAT labelled LUNBOX" sh -c "blkid /dev/${DEV}1 | grep -q 'LABEL=\"LUNBOX\"'"
mkdir -p /mnt/lunbox
if mount /dev/${DEV}1 /mnt/lunbox; then
	head -c 1048576 /dev/urandom >/mnt/lunbox/hello.bin && sum1=$(sha256sum </mnt/lunbox/hello.bin)
	umount /mnt/lunbox && mount /dev/${DEV}1 /mnt/lunbox && sum2=$(sha256sum </mnt/lunbox/hello.bin)
	umount /mnt/lunbox
	check "a file written to it reads back after remount" test "$sum1" = "$sum2"
else
	fail "mount /dev/${DEV}1"
fi
i=0; while [ ! -c /dev/ttyACM0 ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
check "the ACM console is /dev/ttyACM0 on the computer" test -c /dev/ttyACM0

# --- the USB network and iSCSI on it, as the computer sees them ------------------------------
HIF=; i=0
while [ -z "$HIF" ] && [ $i -lt 150 ]; do
	for n in /sys/class/net/*; do [ "$(basename "$(readlink "$n/device/driver" 2>/dev/null)")" = cdc_ncm ] && HIF=${n##*/}; done
	i=$((i + 1)); sleep 0.1
done
if [ -n "$HIF" ]; then pass "the computer sees a network interface ($HIF, $(cat /sys/class/net/$HIF/address))"; else fail "the computer sees a network interface (cdc_ncm)"; fi
if [ -n "$HIF" ]; then
	# The computer opens its end a few seconds after the board's link came up (its "connected"
	# has been waiting on the interrupt endpoint since), as a desktop's network manager would.
	ip netns add computer && ip link set "$HIF" netns computer && ip netns exec computer ip link set "$HIF" up
	has_carrier() { i=0; while [ "$(ip netns exec computer cat /sys/class/net/$HIF/carrier 2>/dev/null)" != 1 ] && [ $i -lt 150 ]; do i=$((i + 1)); sleep 0.1; done; [ $i -lt 150 ]; }
	if has_carrier; then
		pass "the computer's interface has carrier once up"
	else
		# Linux's usbnet can lose the "connected" notification that waits for the first open (a
		# race in its link worker, 6.1 stable and later; README "USB network"): lunbox hears
		# nothing from the computer and announces the link again. No re-open from this side.
		say "no carrier on the first open of $HIF (the usbnet race): waiting for lunbox to announce the link again"
		ncm_story 30
		has_carrier || has_carrier || has_carrier
		check "the computer's interface gets carrier once lunbox announces the link again" \
			sh -c "[ \"\$(ip netns exec computer cat /sys/class/net/$HIF/carrier 2>/dev/null)\" = 1 ] && grep -q 'announcing the link again' /tmp/firstboot.log"
	fi
	printf '#!/bin/sh\ncase $1 in bound) ip addr add "$ip/$mask" dev "$interface" ;; esac\n' >/tmp/udhcpc-fb.sh && chmod +x /tmp/udhcpc-fb.sh
	check "it gets 10.55.0.2 by DHCP" sh -c "ip netns exec computer busybox udhcpc -i $HIF -f -q -n -t 15 -T 2 -s /tmp/udhcpc-fb.sh >/tmp/udhcpc-fb.out 2>&1 && ip netns exec computer ip -4 -o addr show dev $HIF | grep -q 'inet 10.55.0.2/30'"
	ip netns exec computer ip -4 -o addr show dev $HIF | grep -q 'inet 10.55.0.2/30' || { sed 's/^/  udhcpc: /' /tmp/udhcpc-fb.out | tail -n 8; ip netns exec computer ip -o link show dev $HIF | sed 's/^/  computer: /'; ip -o addr show dev usb0 | sed 's/^/  board: /'; ip neigh show dev usb0 | sed 's/^/  board neigh: /'; }
	URL=iscsi://10.55.0.1:3260/iqn.2026-11.org.lunbox:board/0
	check "and reaches the iSCSI disk at $URL" sh -c "ip netns exec computer iscsi-inq $URL 2>&1 | grep -q 'Product:iSCSI disk'"
fi
# --- the shell on the ACM port, from the computer's side ---------------------------------------
check "lunbox loaded serialport's addon from $NM" grep -q " $NM/@serialport/bindings-cpp/prebuilds/$PREBUILD\$" /proc/$PID/maps
timeout 90 node "$REPO/dist/lunbox.js" console -c "ls /" /dev/ttyACM0 >/tmp/console.out 2>&1; crc=$?
sed 's/^/  console: /' /tmp/console.out | head -n 20
check "the shell answers on /dev/ttyACM0: lunbox console -c 'ls /' exits 0 and prints the tree" \
	sh -c "[ $crc = 0 ] && grep -q '^  o- backstores' /tmp/console.out && grep -q 'disk0 .*/var/lib/lunbox/disk0.img' /tmp/console.out && grep -q '^  o- usb' /tmp/console.out"
check "the service logged no error" sh -c "! grep -q '^<3>' /tmp/firstboot.log"
sed 's/^/  lunbox: /' /tmp/firstboot.log | grep -iv 'debug' | tail -n 15

# --- stop: SIGTERM, then ExecStopPost -------------------------------------------------------
# The computer keeps the console open and sends commands without reading the answers: its tty
# throttles cdc-acm, the gadget's IN requests stay queued and ttyGS0's write buffer fills. A
# close(2) of ttyGS0 with unsent output then sleeps in u_serial's gs_close until the host reads,
# the gadget is unbound or 15 s pass: lunbox must not wait for it before removing the gadget.
exec 3<>/dev/ttyACM0
stty -F /dev/ttyACM0 raw -echo
# (bounded: with no shell on the board nothing reads ttyGS0 and these writes would block)
timeout 20 sh -c 'i=0; while [ $i -lt 300 ]; do printf "ls /\r"; i=$((i + 1)); done >&3'
sleep 5
# TIOCOUTQ: bytes written to ttyGS0 and not yet sent to the computer.
outq=$(python3 -c 'import fcntl, os, struct, sys, termios
fd = os.open("/dev/ttyGS0", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
print(struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0" * 4))[0])' 2>&1)
check "the console's output is backed up on the board ($outq bytes unsent on ttyGS0)" test "$outq" -gt 0 2>/dev/null
t0=$(date +%s%N)
kill -TERM $PID
i=0; while kill -0 $PID 2>/dev/null && [ $i -lt 200 ]; do i=$((i + 1)); sleep 0.1; done
if kill -0 $PID 2>/dev/null; then echo "lunbox still running 20 s after SIGTERM: SIGKILL"; kill -9 $PID; fi
wait $PID; rc=$?; PID=
ms=$((($(date +%s%N) - t0) / 1000000))
exec 3>&-
check "SIGTERM: lunbox exits 0" test "$rc" = 0
check "SIGTERM with the console unread: lunbox is gone in $ms ms (< 8000)" test "$ms" -lt 8000
check "the console closed without waiting (no 'did not finish' warning)" sh -c "! grep -q 'did not finish within' /tmp/firstboot.log"
check "ExecStopPost: $(unit_line ExecStopPost)" sh -c "$(unit_line ExecStopPost)"
check "the gadget is gone from configfs" test ! -e /sys/kernel/config/usb_gadget/lunbox
check "the disk is gone from the computer" wait_no_sd "$DEV"
sed 's/^/  lunbox: /' /tmp/firstboot.log | tail -n 20
finish
