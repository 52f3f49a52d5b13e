#!/bin/bash
# run-in-vm.sh GUEST_SCRIPT [extra qemu args...]      (lunbox's copy of the workplace VM runner)
#
# lunbox uses it to test its USB gadget against the Linux kernel's own host drivers:
#   scripts/vm/run-in-vm.sh scripts/vm/guest-usb.sh     FunctionFS + BOT on dummy_hcd
#   scripts/vm/run-in-vm.sh scripts/bench-usb.sh        lunbox vs kernel mass_storage
#
# Boot the Debian kernel (linux-image-amd64's current ABI package) under
# qemu-system-x86_64 with KVM (TCG if KVM is unusable), with the HOST's root
# filesystem as the guest root (9p, read-only, under a tmpfs overlay: writes
# stay in guest RAM), run GUEST_SCRIPT there as root, stream its stdout+stderr
# to our stdout and exit with its exit status.
#
# Guest view: host / (overlay), guest kernel modules on /lib/modules,
# /run/vm (script, env), $VM_OUT=/run/vm/out (host dir $VM_OUTDIR if set,
# else discarded), $VM_SCRIPT_DIR (host dir of GUEST_SCRIPT, for helpers),
# $VM_ACCEL, busybox applets as PATH fallback, loopback up, no network
# unless VM_NET is set.
#
# Environment (all optional):
#   VM_MEM=2G VM_CPUS=2      guest size
#   VM_TIMEOUT=600           seconds before the VM is killed (exit 124)
#   VM_ACCEL=kvm|tcg         force an accelerator (default: kvm if usable);
#                            a KVM boot that fails before the script starts
#                            (qemu error, "KVM internal error", no start within
#                            VM_KVM_BOOT_TIMEOUT=60 s) is retried with TCG
#                            unless VM_NO_FALLBACK=1
#   VM_BOOT=pvh|bzimage      kernel entry (default pvh: uncompressed vmlinux
#                            extracted once into the cache; faster under TCG)
#   VM_OUTDIR=DIR            host dir shared read-write as $VM_OUT in guest
#   VM_PASSENV="A B"         host env vars exported into the guest script
#   VM_NET=OPTS              add a user-mode NIC: -nic user,restrict=on,OPTS
#                            e.g. VM_NET=hostfwd=tcp:127.0.0.1:3260-:3260
#                            (restrict=on: the guest reaches nothing outside
#                            qemu except explicit guestfwd= rules, e.g.
#                            guestfwd=tcp:10.0.2.100:8080-tcp:127.0.0.1:8080)
#   VM_APPEND="..."          extra kernel command line
#   VM_CPU=MODEL             TCG's -cpu (default max,-erms,-fsrm: TCG runs a REP
#                            MOVSB/STOSB one byte per loop turn, so with ERMS the
#                            guest kernel's copies and clears run 4-6x slower than
#                            its REP MOVSQ ones; measured: 500 MiB into tmpfs 223
#                            -> 923 MB/s, /dev/zero 0.6 -> 3.7 GB/s). KVM: host
#   VM_DEBUG=1               full kernel log to stderr, keep the run dir
#   VM_QUIET=1               no [run-in-vm] messages on stderr
#   VM_TIMING=1              report boot-to-script time on stderr
#   VM_CACHE=DIR             default ${XDG_CACHE_HOME:-$HOME/.cache}/vm
#   VM_KERNEL_PKG=NAME       kernel package (default: what linux-image-amd64
#                            depends on; falls back to the newest one cached)
# Exit status: the guest script's; 124 timeout; 125 harness/VM failure.
# Needs (Debian): qemu-system-x86 busybox-static cpio apt dpkg; kmod optional.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
msg() { [ -n "${VM_QUIET:-}" ] || echo "[run-in-vm] $*" >&2; }
die() { echo "[run-in-vm] error: $*" >&2; exit 125; }

[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 125; }
SCRIPT=$1; shift
[ -r "$SCRIPT" ] && [ ! -d "$SCRIPT" ] || die "cannot read guest script: $SCRIPT"
for t in qemu-system-x86_64 cpio gzip dpkg-deb; do
	command -v $t >/dev/null || die "$t missing (apt-get install qemu-system-x86 cpio dpkg)"
done
BUSYBOX=/bin/busybox # from busybox-static (a dynamic one has an ELF interpreter)
[ -x $BUSYBOX ] && ! grep -qa '/ld-linux' $BUSYBOX ||
	die "static busybox missing (apt-get install busybox-static)"

CACHE=${VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm}
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock" # serialise cache updates between concurrent runs
flock 9

# ---- 1. kernel: apt-get download + dpkg-deb -x into the cache (once) ------
PKG=${VM_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ && !p {print $2; p=1}' || true)}
if [ -z "$PKG" ] || { [ ! -e "$CACHE/kernel/$PKG/.done" ] && ! apt-cache show "$PKG" >/dev/null 2>&1; }; then
	PKG=$(ls -1 "$CACHE/kernel" 2>/dev/null | sort -V | tail -n1) # offline: newest cached
	[ -n "$PKG" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
fi
KROOT=$CACHE/kernel/$PKG
if [ ! -e "$KROOT/.done" ]; then
	msg "fetching $PKG (apt-get download)"
	rm -rf "$CACHE/dl" "$KROOT.tmp"; mkdir -p "$CACHE/dl" "$KROOT.tmp"
	(cd "$CACHE/dl" && apt-get download -q "$PKG" 2>&1 | { grep -v 'unsandboxed as root' || true; } >&2) ||
		die "apt-get download $PKG failed"
	dpkg-deb -x "$CACHE"/dl/"$PKG"_*.deb "$KROOT.tmp"
	rm -rf "$CACHE/dl" "$KROOT"; mv "$KROOT.tmp" "$KROOT"; touch "$KROOT/.done"
fi
VMLINUZ=$(ls -1 "$KROOT"/boot/vmlinuz-* | head -n1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KROOT/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no modules for $KVER in $KROOT"

# modules.dep: kmod's depmod if present (also writes the .bin indexes kmod's
# modprobe needs), else busybox depmod; redo when kmod appears later.
DEPMOD=busybox; command -v depmod >/dev/null && DEPMOD=kmod
if [ ! -e "$MODDIR/modules.dep" ] || { [ $DEPMOD = kmod ] && [ -e "$MODDIR/.depmod-busybox" ]; }; then
	msg "depmod ($DEPMOD) $KVER"
	rm -f "$MODDIR"/.depmod-*
	if [ $DEPMOD = kmod ]; then depmod -b "$KROOT" "$KVER"; else "$BUSYBOX" depmod -b "$KROOT" "$KVER"; fi
	touch "$MODDIR/.depmod-$DEPMOD"
fi

# ---- 2. initramfs: busybox + init + the modules stage 1 needs ---------------
INITRD=$CACHE/initramfs-lunbox-$KVER.cpio.gz # own name: other copies of this runner share the cache
WANT="virtio_pci 9pnet_virtio 9p overlay virtio_console virtio_net"
if [ ! -e "$INITRD" ] || [ "$HERE/init" -nt "$INITRD" ] || [ "$0" -nt "$INITRD" ] ||
	[ "$MODDIR/modules.dep" -nt "$INITRD" ] || [ "$BUSYBOX" -nt "$INITRD" ]; then
	msg "building initramfs for $KVER"
	ST=$(mktemp -d "${TMPDIR:-/tmp}/vm-initrd.XXXXXX")
	mkdir -p "$ST/bin" "$ST/mods"
	cp "$BUSYBOX" "$ST/bin/busybox"
	cp "$HERE/init" "$ST/init"; chmod 755 "$ST/init"
	# modules.dep lines are "path: dep dep ..." with the full dependency
	# closure; load the deps (last first) and then the module itself.
	for w in $WANT; do
		awk -v w="$w" -F': *' '{ n=$1; sub(/.*\//,"",n); sub(/\.ko.*/,"",n); gsub(/-/,"_",n)
			if (n==w) { k=split($2,d," "); for(i=k;i>=1;i--) print d[i]; print $1; exit } }' \
			"$MODDIR/modules.dep"
	done | awk '!seen[$0]++' | while read -r rel; do
		n=${rel##*/}; n=${n%%.ko*}
		case "$rel" in
		*.ko) cp "$MODDIR/$rel" "$ST/mods/$n.ko" ;;
		*.ko.xz) xz -dc "$MODDIR/$rel" >"$ST/mods/$n.ko" ;;
		*.ko.zst) zstd -qdc "$MODDIR/$rel" >"$ST/mods/$n.ko" ;;
		*.ko.gz) gzip -dc "$MODDIR/$rel" >"$ST/mods/$n.ko" ;;
		esac
		echo "$n" >>"$ST/mods.list"
	done
	(cd "$ST" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.tmp"
	mv "$INITRD.tmp" "$INITRD"; rm -rf "$ST"
fi

# uncompressed vmlinux for PVH direct boot (skips firmware real mode and the
# in-guest decompressor: much faster under TCG). bzImage payload is xz/zstd/gz.
VMLINUX=$CACHE/vmlinux-$KVER
if [ ! -s "$VMLINUX" ] || [ "$VMLINUZ" -nt "$VMLINUX" ]; then
	for z in '\xfd7zXZ\x00:xz -dcq' '\x28\xb5\x2f\xfd:zstd -dcq' '\x1f\x8b\x08:gzip -dcq'; do
		off=$(LC_ALL=C grep -m1 -obUaP "${z%%:*}" "$VMLINUZ" | cut -d: -f1 | sed -n 1p || true)
		[ -n "$off" ] || continue
		tail -c +$((off + 1)) "$VMLINUZ" | ${z#*:} >"$VMLINUX.tmp" 2>/dev/null || true
		if [ "$(od -An -c -N4 "$VMLINUX.tmp" | tr -d ' ')" = 177ELF ]; then
			mv "$VMLINUX.tmp" "$VMLINUX"; break
		fi
	done
	rm -f "$VMLINUX.tmp"
fi
flock -u 9
KIMG=$VMLINUZ
[ "${VM_BOOT:-pvh}" = pvh ] && [ -s "$VMLINUX" ] && KIMG=$VMLINUX

# ---- 3. accelerator: KVM if qemu can initialise it, else TCG ----------------
# Special case: a kvm_pvm-only host (PVM) exposes
# /dev/kvm but cannot run an unmodified Debian kernel (emulation failures on
# cmpxchg16b/xrstor, very slow shadow paging), so TCG is chosen there.
ACCEL=${VM_ACCEL:-}
if [ -z "$ACCEL" ]; then
	ACCEL=tcg
	if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		msg "no usable /dev/kvm: using TCG (slow)"
	elif ! echo quit | timeout 20 qemu-system-x86_64 -accel kvm -M none -nodefaults \
		-display none -monitor stdio >/dev/null 2>&1; then
		msg "qemu cannot initialise KVM: using TCG (slow)"
	elif [ -d /sys/module/kvm_pvm ] && [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
		msg "/dev/kvm is kvm_pvm (PVM), which cannot boot a stock kernel: using TCG (VM_ACCEL=kvm forces KVM)"
	else
		ACCEL=kvm
	fi
fi

# ---- 4. per-run transfer dir ------------------------------------------------
RUN=$(mktemp -d "${TMPDIR:-/tmp}/vm-run.XXXXXX")
QPID=
stop_vm() { [ -s "$RUN/qemu.pid" ] && kill "$(cat "$RUN/qemu.pid")" 2>/dev/null || true; }
cleanup() {
	[ -n "$QPID" ] && stop_vm
	if [ -n "${VM_DEBUG:-}" ]; then msg "run dir kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cat "$SCRIPT" >"$RUN/script" && chmod 755 "$RUN/script" # (may be a pipe: <(...), /dev/stdin)
# env for the guest script: VM_SCRIPT_DIR (the script's host dir, visible in
# the guest as the host root is) + the variables named in VM_PASSENV
printf "export VM_SCRIPT_DIR='%s'\n" "$(cd "$(dirname "$SCRIPT")" && pwd | sed "s/'/'\\\\''/g")" >"$RUN/env"
for v in ${VM_PASSENV:-}; do
	[ -n "${!v+x}" ] && printf "export %s='%s'\n" "$v" "$(printf %s "${!v}" | sed "s/'/'\\\\''/g")" >>"$RUN/env"
done

APPEND="console=ttyS0 panic=-1 vm.msize=262144"
[ -n "${VM_DEBUG:-}" ] || APPEND="$APPEND quiet loglevel=3"
QARGS=(-M q35 -smp "${VM_CPUS:-2}" -m "${VM_MEM:-2G}"
	-nodefaults -no-user-config -display none -vga none -no-reboot
	-kernel "$KIMG" -initrd "$INITRD"
	-serial "file:$RUN/console"
	-fsdev local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap
	-device virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot
	-fsdev "local,id=fsmod,path=$KROOT/lib/modules,security_model=none,readonly=on"
	-device virtio-9p-pci,fsdev=fsmod,mount_tag=modules
	-fsdev "local,id=fsxfer,path=$RUN,security_model=none"
	-device virtio-9p-pci,fsdev=fsxfer,mount_tag=xfer
	-device virtio-serial-pci -chardev "file,id=vmout,path=$RUN/stdout"
	-device virtserialport,chardev=vmout,name=vm.out)
if [ -n "${VM_OUTDIR:-}" ]; then
	mkdir -p "$VM_OUTDIR"
	QARGS+=(-fsdev "local,id=fsout,path=$(cd "$VM_OUTDIR" && pwd),security_model=none"
		-device virtio-9p-pci,fsdev=fsout,mount_tag=vmout)
	APPEND="$APPEND vm.out=1"
fi
if [ -n "${VM_NET+x}" ]; then
	QARGS+=(-nic "user,model=virtio-net-pci,restrict=on${VM_NET:+,$VM_NET}")
	APPEND="$APPEND vm.net=1"
else
	QARGS+=(-nic none)
fi
APPEND="$APPEND ${VM_APPEND:-}"

# ---- 5. run -------------------------------------------------------------------
# run_vm ACCEL: boot, stream the guest's output, wait. Returns 0 when the
# script ran (status in $RUN/rc), 2 when a KVM boot failed before the script
# started (so TCG may be tried), 1 otherwise.
now() { echo "${EPOCHREALTIME/,/.}"; }
run_vm() {
	local acc=$1 cpu=${VM_CPU:-max,-erms,-fsrm} started= t0 ts=
	shift
	[ "$acc" = kvm ] && cpu=host
	rm -f "$RUN"/{rc,started,accel,qemu.pid}; : >"$RUN/stdout"; : >"$RUN/console"
	msg "kernel $KVER ($( [ "$KIMG" = "$VMLINUX" ] && echo PVH vmlinux || echo bzImage)), accel=$acc, cpu=$cpu, mem=${VM_MEM:-2G}, cpus=${VM_CPUS:-2}"
	t0=$(now)
	# the wrapper subshell reaps timeout+qemu itself, so that a qemu abort is
	# not reported by bash as job noise; $RUN/qemu.pid is timeout's pid.
	(timeout -k 5 "${VM_TIMEOUT:-600}" qemu-system-x86_64 -accel "$acc" -cpu "$cpu" "${QARGS[@]}" \
		-append "$APPEND" "$@" </dev/null >"$RUN/qemu.log" 2>&1 &
		echo $! >"$RUN/qemu.pid"; wait $!) 2>/dev/null &
	QPID=$!
	[ -n "${VM_DEBUG:-}" ] && tail -n +1 -s 0.1 -f --pid=$QPID "$RUN/console" >&2 &
	tail -c +1 -s 0.1 -f --pid=$QPID "$RUN/stdout" &
	local tpid=$!
	while kill -0 $QPID 2>/dev/null; do
		if [ -z "$started" ]; then
			if [ -s "$RUN/started" ]; then
				started=1; ts=$(now)
			elif [ "$acc" = kvm ] && { grep -qs 'KVM internal error' "$RUN/qemu.log" ||
				awk -v a="$t0" -v b="$(now)" -v l="${VM_KVM_BOOT_TIMEOUT:-60}" 'BEGIN{exit !(b-a>l)}'; }; then
				stop_vm; break
			fi
			sleep 0.02
		else
			sleep 0.2
		fi
	done
	wait $QPID; local qrc=$?
	QPID=
	wait $tpid 2>/dev/null || true
	local t1; t1=$(now)
	if [ -s "$RUN/rc" ]; then
		[ -n "${VM_TIMING:-}" ] && msg "$(awk -v a="$t0" -v b="$ts" -v c="$t1" -v u="$(cut -d' ' -f1 "$RUN/started")" \
			'BEGIN{printf "timing: start->script %.3fs (guest kernel uptime then %.3fs), start->exit %.3fs", b-a, u, c-a}')"
		GACC=$(cat "$RUN/accel" 2>/dev/null || echo '?')
		[ "$GACC" = "$acc" ] || msg "warning: guest thinks accel=$GACC"
		msg "guest script exit status $(cat "$RUN/rc") ($(awk -v a="$t0" -v c="$t1" 'BEGIN{printf "%.1fs", c-a}'), accel=$acc)"
		return 0
	fi
	if [ -z "$started" ] && [ "$acc" = kvm ]; then
		msg "KVM boot failed (qemu exit $qrc): $(grep -m1 -iE 'error|fail' "$RUN/qemu.log" || echo 'no script start in time')"
		return 2
	fi
	if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
		msg "timeout after ${VM_TIMEOUT:-600}s"; VMRC=124
	else
		msg "VM ended without a result (qemu exit $qrc)"; VMRC=125
	fi
	{ echo "--- qemu:"; tail -n 20 "$RUN/qemu.log"; echo "--- console (tail):"; tail -n 40 "$RUN/console"; } >&2
	return 1
}

VMRC=125
set +e
run_vm "$ACCEL" "$@"; r=$?
if [ $r -eq 2 ] && [ -z "${VM_NO_FALLBACK:-}" ]; then
	msg "falling back to TCG"
	run_vm tcg "$@"; r=$?
fi
set -e
[ $r -eq 0 ] && exit "$(cat "$RUN/rc")"
exit $VMRC
