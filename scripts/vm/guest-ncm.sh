#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: the USB network (CDC NCM) beside lunbox's USB disk on
# dummy_hcd, with iSCSI on the cable's link. One kernel plays both ends, so the computer's end
# (the cdc_ncm interface) is moved into its own network namespace "host": board and computer
# then have separate addresses and routing tables, as over a real cable.
#   1. lunbox serve --ncm (+ disk, ACM): the gadget has ffs + acm + ncm; the board's usb0 gets
#      10.55.0.1/30, up, with a permanent neighbour entry for the computer's address and MAC
#   2. what hosts read: IAD class codes EF/02/01, bcdDevice 0x0101, interfaces 08/06/50, ACM,
#      NCM 02/0d; the Microsoft OS string (MSFT100, vendor code 0xcd) and the WINNCM compatible
#      ID on the NCM interface (read through libusb, as Windows reads them); the cdc_ncm
#      interface takes host_addr as its MAC
#   3. busybox udhcpc in "host" gets 10.55.0.2/30, lease 3600, no router, no DNS (the namespace
#      has no default route); again with the BROADCAST flag; RENEW (unicast) is ACKed and an
#      INIT-REBOOT for a wrong address NAKed (scripts/vm/dhcp-probe.js)
#   4. never a rogue server elsewhere: a veth pair stands for the board's Wi-Fi, with the board's
#      default route through it; a DHCP client there (another MAC) gets nothing, and no packet at
#      all leaves the board's veth while the computer's broadcast exchange runs
#   5. iSCSI from "host": iscsi-ls and iscsi-inq reach the portal 10.55.0.1:3260 (the only
#      address it listens on), qemu-img reads the whole LUN back identical (sha256)
#   6. kill -9 and start again: the leftover gadget goes, the computer's interface comes back
#      with the same MAC and gets the same lease; SIGTERM: gadget, usb0, the computer's
#      interface and the DHCP port are gone
# Prints "PASS: ..." / "FAIL: ..." per check and "guest-ncm: N passed, M failed" at the end.
# Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-ncm.sh
set -u
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"

finish() {
	lunbox_stop TERM
	echo "guest-ncm: $PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
	exit $?
}
inhost() { ip netns exec host "$@"; }
SERIAL=LUNBOXNCM1
BOARD=10.55.0.1
HOST=10.55.0.2
G=/sys/kernel/config/usb_gadget/lunbox
# host_if: the computer's end (bound to cdc_ncm) in the root namespace, or empty
host_if() {
	for n in /sys/class/net/*; do
		[ "$(basename "$(readlink "$n/device/driver" 2>/dev/null)")" = cdc_ncm ] && { basename "$n"; return 0; }
	done
	return 1
}
wait_host_if() {
	HIF=; i=0
	while [ $i -lt 150 ]; do HIF=$(host_if) && return 0; i=$((i + 1)); sleep 0.1; done
	return 1
}
# to_host IF: move the computer's interface into the "host" namespace and bring it up
to_host() {
	ip link set "$1" netns host && inhost ip link set "$1" up
}
# The udhcpc script records what it was given and sets the address, as a host would.
cat >/tmp/udhcpc.sh <<'EOF'
#!/bin/sh
echo "$1 ip=${ip:-} mask=${mask:-} subnet=${subnet:-} router=${router:-} dns=${dns:-} lease=${lease:-} serverid=${serverid:-}" >>/tmp/udhcpc.events
case $1 in
bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-30}" dev "$interface" ;;
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
esac
EOF
chmod +x /tmp/udhcpc.sh
udhcp() { # udhcp NETNS IF [udhcpc options]: one lease, or failure after ~20 s (slow TCG boots)
	ns=$1; ifc=$2; shift 2
	: >/tmp/udhcpc.events
	ip netns exec "$ns" busybox udhcpc -i "$ifc" -f -q -n -t 10 -T 2 -s /tmp/udhcpc.sh "$@" >/tmp/udhcpc.out 2>&1
}

usb_modules
for m in usb_f_ncm cdc_ncm veth; do modprobe $m || echo "modprobe $m failed"; done
lunbox_bundle || { fail "dist/lunbox.js present"; finish; }
mkdir -p /mnt/store
mount -t tmpfs -o size=200M tmpfs /mnt/store
IMG=/mnt/store/disk.img
dd if=/dev/urandom of=$IMG bs=1M count=32 status=none
SUM=$(sha256sum <$IMG | cut -d' ' -f1)
ip netns add host
ip netns exec host ip link set lo up

# --- 1. start: gadget with NCM, the board's end configured ---------------------------------
if lunbox_start --backstore file:$IMG --acm --ncm --serial $SERIAL --verbose; then pass "lunbox started (serve --ncm)"; else fail "lunbox started"; finish; fi
i=0; while ! grep -q '^ncm: ready' "$LUNBOX_LOG" && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
grep -E '^(iscsi://|usb: ready|ncm: ready)|ncm: |dhcp: serving' "$LUNBOX_LOG" | sed 's/^/  lunbox: /'
check "'ncm: ready usb0 $BOARD/30 computer $HOST' on stdout" grep -q "^ncm: ready usb0 $BOARD/30 computer $HOST " "$LUNBOX_LOG"
URL=$(grep -m1 '^iscsi://' "$LUNBOX_LOG")
check "the iSCSI URL is on the board's cable address ($URL)" sh -c "echo '$URL' | grep -q '^iscsi://$BOARD:3260/iqn\\.'"
check "functions: ffs.lunbox acm.usb0 ncm.usb0" test "$(ls $G/functions | tr '\n' ' ')" = "acm.usb0 ffs.lunbox ncm.usb0 "
DEV_MAC=$(cat $G/functions/ncm.usb0/dev_addr); HOST_MAC=$(cat $G/functions/ncm.usb0/host_addr)
say "dev_addr $DEV_MAC host_addr $HOST_MAC ifname $(cat $G/functions/ncm.usb0/ifname)"
check "MACs: board 02:<x>, computer 06:<x> (locally administered, same 40-bit tail)" \
	sh -c "[ '${DEV_MAC#02:}' = '${HOST_MAC#06:}' ] && [ '${DEV_MAC%%:*}' = 02 ] && [ '${HOST_MAC%%:*}' = 06 ]"
check "board usb0 MAC is dev_addr" test "$(cat /sys/class/net/usb0/address)" = "$DEV_MAC"
check "board usb0 is up with $BOARD/30" sh -c "ip -4 -o addr show dev usb0 | grep -q 'inet $BOARD/30 brd 10.55.0.3' && ip -o link show usb0 | grep -q '<[^>]*UP'"
check "permanent neighbour entry $HOST → $HOST_MAC" sh -c "ip neigh show dev usb0 | grep -q '^$HOST lladdr $HOST_MAC PERMANENT'"
OSD="$(cat $G/os_desc/use) $(cat $G/os_desc/b_vendor_code) $(cat $G/os_desc/qw_sign) $(ls $G/os_desc | tr '\n' ' ')"
say "os_desc: $OSD"
# Debian's 6.1 shows b_vendor_code sign-extended (0xffffffcd); the descriptor below has 0xcd.
check "os_desc: use 1, vendor code 0xcd, MSFT100, linked to c.1" sh -c "echo '$OSD' | grep -qE '^1 0x(ffffff)?cd MSFT100 .*c\.1' && [ -L $G/os_desc/c.1 ]"

# --- 2. what the host reads --------------------------------------------------------------
if wait_host_if; then pass "cdc_ncm bound the computer's end: $HIF"; else fail "cdc_ncm interface on the host side"; dmesg | tail -n 20; finish; fi
check "the computer's interface has host_addr $HOST_MAC" test "$(cat /sys/class/net/$HIF/address)" = "$HOST_MAC"
DESC=$(node "$REPO/scripts/vm/usb-descriptors.js" $SERIAL 2>&1)
say "descriptors: $DESC"
jq_has() { echo "$DESC" | grep -q "$1"; }
check "device class EF/02/01 (IAD), bcdDevice 0x0101" jq_has '"bDeviceClass":239,"bDeviceSubClass":2,"bDeviceProtocol":1,"bcdDevice":257'
check "interfaces: mass storage 08/06/50, ACM 02/02, NCM 02/0d" sh -c "echo '$DESC' | grep -q '\[0,8,6,80\]' && echo '$DESC' | grep -q ',2,2,1\]' && echo '$DESC' | grep -q ',2,13,0\]'"
NCM_IF=$(echo "$DESC" | sed -n 's/.*\[\([0-9]*\),2,13,0\].*/\1/p')
check "Microsoft OS string descriptor: MSFT100, vendor code 0xcd" jq_has '"osString":{"signature":"MSFT100","vendorCode":205}'
check "Extended Compat ID: WINNCM on the NCM interface ($NCM_IF)" jq_has "{\"firstInterface\":$NCM_IF,\"compatibleId\":\"WINNCM\"}"

# --- 4 (first half). a stand-in for the board's Wi-Fi, with the default route --------------
ip netns add wifi
ip link add veth-b type veth peer name veth-w
ip link set veth-w netns wifi
sysctl -qw net.ipv6.conf.veth-b.disable_ipv6=1
ip netns exec wifi sysctl -qw net.ipv6.conf.veth-w.disable_ipv6=1
ip addr add 192.168.77.1/24 dev veth-b && ip link set veth-b up
ip route add default via 192.168.77.254 dev veth-b
ip netns exec wifi ip link set veth-w up
ip netns exec wifi ip link set lo up
txb() { cat /sys/class/net/veth-b/statistics/tx_packets; }
sleep 2

# --- 3. DHCP from the computer's namespace --------------------------------------------------
check "moved $HIF into namespace 'host'" to_host "$HIF"
T0=$(txb)
if udhcp host "$HIF"; then pass "udhcpc got a lease"; else fail "udhcpc got a lease"; cat /tmp/udhcpc.out; fi
sed 's/^/  udhcpc: /' /tmp/udhcpc.events
check "lease: $HOST, mask 255.255.255.252, 3600 s, server $BOARD" grep -q "^bound ip=$HOST mask=30 subnet=255.255.255.252 router= dns= lease=3600 serverid=$BOARD$" /tmp/udhcpc.events
inhost ip route >/tmp/routes.txt 2>&1
sed 's/^/  host routes: /' /tmp/routes.txt
check "no router and no DNS given: the computer's namespace has no default route" sh -c "grep -q '^10.55.0.0/30 dev $HIF' /tmp/routes.txt && ! grep -q default /tmp/routes.txt"
check "$HIF has $HOST/30" sh -c "ip netns exec host ip -4 -o addr show dev $HIF | grep -q 'inet $HOST/30'"
T1=$(txb)
if udhcp host "$HIF" -B; then pass "udhcpc -B (BROADCAST flag: broadcast OFFER/ACK) got the lease"; else fail "udhcpc -B got the lease"; cat /tmp/udhcpc.out; fi
T2=$(txb)
check "no packet left the board's other interface during either exchange (tx $T0 → $T1 → $T2)" test "$T0" = "$T2"
R=$(inhost node "$REPO/scripts/vm/dhcp-probe.js" renew "$HOST_MAC" $HOST $BOARD)
say "RENEW: $R"
check "RENEWING (unicast REQUEST, ciaddr $HOST) → ACK" sh -c "echo '$R' | grep -q '^reply ACK yiaddr=$HOST ciaddr=$HOST lease=3600 mask=255.255.255.252 router=no dns=no server=$BOARD'"
R=$(inhost node "$REPO/scripts/vm/dhcp-probe.js" reboot "$HOST_MAC" $HOST 192.168.178.23)
say "INIT-REBOOT for 192.168.178.23: $R"
check "INIT-REBOOT for another network's address → NAK" sh -c "echo '$R' | grep -q '^reply NAK yiaddr=0.0.0.0'"

# --- 4. a DHCP client on the "Wi-Fi" gets nothing --------------------------------------------
T3=$(txb)
if udhcp wifi veth-w -t 2 -T 1; then fail "a DHCP client on the board's other network got a lease from lunbox"; else pass "a DHCP client on the board's other network (another MAC) gets no answer"; fi
T4=$(txb)
check "nothing was sent to it (veth tx $T3 → $T4)" test "$T3" = "$T4"
check "lunbox logged why: not the computer's end of the USB link" grep -q "ignored: from .*, not the computer's end of the USB link" "$LUNBOX_LOG"
ip netns exec wifi ip addr add 192.168.77.2/24 dev veth-w
sleep 1
T4=$(txb)
R=$(ip netns exec wifi node "$REPO/scripts/vm/dhcp-probe.js" discover "$HOST_MAC" 192.168.77.2 2>&1)
T5=$(txb)
say "a DISCOVER on the Wi-Fi with the computer's MAC: $R (veth tx $T4 → $T5)"
check "even a DISCOVER there spoofing the computer's MAC gets no reply on that network" sh -c "[ '$R' = 'no reply' ] && [ $T4 = $T5 ]"

# --- 5. iSCSI over the cable ---------------------------------------------------------------
ss -ltn >/tmp/ss.txt
check "the iSCSI portal listens on $BOARD:3260 only" sh -c "grep -q '$BOARD:3260 ' /tmp/ss.txt && ! grep -qE '(0\\.0\\.0\\.0|\\*|\\[::\\]):3260 ' /tmp/ss.txt"
inhost iscsi-ls -s "iscsi://$BOARD:3260" >/tmp/ls.txt 2>&1
sed 's/^/  iscsi-ls: /' /tmp/ls.txt | head -n 6
IQN=$(echo "$URL" | sed 's|^iscsi://[^/]*/\(.*\)/0$|\1|')
check "iscsi-ls from 'host' discovers $IQN at $BOARD:3260" sh -c "grep -q 'Target:$IQN Portal:$BOARD:3260' /tmp/ls.txt"
inhost iscsi-inq "$URL" >/tmp/inq.txt 2>&1
sed -n 's/^\(Vendor\|Product\)/  iscsi-inq: &/p' /tmp/inq.txt
check "iscsi-inq from 'host': vendor LUNBOX" grep -q 'LUNBOX' /tmp/inq.txt
rm -f /tmp/read.img
inhost qemu-img convert -f raw -O raw "$URL" /tmp/read.img >/tmp/qemu.txt 2>&1
GOT=$(sha256sum </tmp/read.img 2>/dev/null | cut -d' ' -f1)
check "qemu-img reads the 32 MiB LUN over iSCSI identical (sha256)" test "$GOT" = "$SUM"
[ "$GOT" = "$SUM" ] || cat /tmp/qemu.txt

# --- 6. crash, restart, stop -------------------------------------------------------------
lunbox_stop KILL
sleep 0.5
if lunbox_start --backstore file:$IMG --acm --ncm --serial $SERIAL --verbose; then pass "restart after kill -9 (leftover gadget with NCM removed)"; else fail "restart after kill -9"; finish; fi
if wait_host_if; then pass "the computer's interface is back ($HIF)"; else fail "the computer's interface is back"; finish; fi
check "with the same MAC $HOST_MAC" test "$(cat /sys/class/net/$HIF/address)" = "$HOST_MAC"
to_host "$HIF"
if udhcp host "$HIF"; then pass "and the same lease"; else fail "a lease after the restart"; fi
check "lease after restart: $HOST" grep -q "^bound ip=$HOST " /tmp/udhcpc.events
check "iscsi-inq after restart" sh -c "ip netns exec host iscsi-inq '$URL' 2>&1 | grep -q LUNBOX"
lunbox_stop TERM
check "SIGTERM: exit status 0" [ "${LUNBOX_RC:-1}" = 0 ]
check "SIGTERM: gadget removed" [ ! -e $G ]
check "SIGTERM: the board's usb0 is gone" [ ! -e /sys/class/net/usb0 ]
check "SIGTERM: the computer's interface is gone" sh -c "ip netns exec host ip link show >/tmp/links.txt 2>&1 && ! grep -q ' $HIF:' /tmp/links.txt"
check "SIGTERM: UDP port 67 is free" sh -c "! ss -lun | grep -q ':67 '"
tail -n 4 "$LUNBOX_LOG" | sed 's/^/  lunbox: /'
finish
