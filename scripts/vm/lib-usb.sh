# Helpers for the USB guest scripts (sourced; POSIX sh). Run inside run-in-vm.sh, where the
# host's root is the guest's root, so the repository and its node_modules are visible.
#
#   usb_modules              load configfs, dummy_hcd (high speed; USB_SPEED=super for SS),
#                            libcomposite, usb_f_fs, usb_f_acm, usb-storage, sd, cdc_acm
#   lunbox_bundle            check that the one-file bundle dist/lunbox.js is there (unless $LUNBOX_CMD set)
#   lunbox_start ARGS...     start it in the background ($LUNBOX_PID), wait for "usb: ready"
#   lunbox_stop [SIGNAL]     stop it and wait
#   wait_sd VENDOR           wait for /dev/sdX whose SCSI vendor is VENDOR; sets $DEV
#   wait_no_sd DEV           wait until /dev/DEV has gone
#   wait_sr VENDOR           wait for /dev/srN whose SCSI vendor is VENDOR; sets $SR
#   sums DIR                 sha256 of every file below DIR, sorted by path
#   pass/fail TEXT, check TEXT CMD...   counted checks ($PASSED, $FAILED): "PASS: TEXT" when CMD succeeds

: "${REPO:?set REPO (the repository root) before sourcing lib-usb.sh}"

PASSED=0; FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
check() { n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
LUNBOX_JS=${LUNBOX_JS:-$REPO/dist/lunbox.js}
LUNBOX_LOG=${LUNBOX_LOG:-/tmp/lunbox-usb.log}

say() { echo "== $*"; }

usb_modules() {
	modprobe configfs 2>/dev/null || true
	mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
	if [ "${USB_SPEED:-high}" = super ]; then modprobe dummy_hcd is_super_speed=1; else modprobe dummy_hcd; fi
	for m in libcomposite usb_f_fs usb_f_acm usb_f_mass_storage usb_storage sd_mod sg cdc_acm; do
		modprobe $m || echo "modprobe $m failed"
	done
	# usb-storage waits 1 s before scanning a new device by default
	echo 0 >/sys/module/usb_storage/parameters/delay_use
}

lunbox_bundle() {
	[ -n "${LUNBOX_CMD:-}" ] && return 0
	[ -f "$LUNBOX_JS" ] || { echo "$LUNBOX_JS missing: run 'npm run build' on the host first"; return 1; }
}

# lunbox_start ARGS... : extra arguments for the serve entry (e.g. --backstore file:X --acm)
lunbox_start() {
	: >"$LUNBOX_LOG"
	if [ -n "${LUNBOX_CMD:-}" ]; then
		$LUNBOX_CMD "$@" >>"$LUNBOX_LOG" 2>&1 &
	else
		node "$LUNBOX_JS" serve --usb --control none "$@" >>"$LUNBOX_LOG" 2>&1 &
	fi
	LUNBOX_PID=$!
	i=0
	while [ $i -lt 600 ]; do
		grep -q '^usb: ready' "$LUNBOX_LOG" && return 0
		kill -0 $LUNBOX_PID 2>/dev/null || { echo "lunbox exited:"; cat "$LUNBOX_LOG"; return 1; }
		i=$((i + 1)); sleep 0.1
	done
	echo "lunbox not ready after 60 s:"; cat "$LUNBOX_LOG"; return 1
}

lunbox_stop() {
	[ -n "${LUNBOX_PID:-}" ] || return 0
	kill -"${1:-TERM}" $LUNBOX_PID 2>/dev/null
	i=0
	while kill -0 $LUNBOX_PID 2>/dev/null && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
	if kill -0 $LUNBOX_PID 2>/dev/null; then echo "lunbox did not exit: KILL"; kill -9 $LUNBOX_PID; fi
	wait $LUNBOX_PID 2>/dev/null
	LUNBOX_RC=$?
	LUNBOX_PID=
	return 0
}

# wait_sd VENDOR [TIMEOUT_TENTHS]
wait_sd() {
	DEV=
	i=0
	while [ $i -lt "${2:-300}" ]; do
		for b in /sys/block/sd*; do
			[ -e "$b/device/vendor" ] && [ "$(cat "$b/device/vendor" | tr -d ' ')" = "$1" ] && DEV=${b##*/}
		done
		[ -n "$DEV" ] && [ -b /dev/$DEV ] && [ "$(cat /sys/block/$DEV/size)" != 0 ] && return 0
		i=$((i + 1)); sleep 0.1
	done
	DEV=
	return 1
}

wait_no_sd() {
	i=0
	while [ -e "/sys/block/$1" ] && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
	[ ! -e "/sys/block/$1" ]
}

# wait_sr VENDOR: wait for /dev/srN whose SCSI vendor is VENDOR; sets $SR
wait_sr() {
	SR=; i=0
	while [ $i -lt 300 ]; do
		for b in /sys/block/sr*; do
			[ -e "$b/device/vendor" ] && [ "$(tr -d ' ' <"$b/device/vendor")" = "$1" ] && SR=${b##*/}
		done
		[ -n "$SR" ] && [ -b /dev/$SR ] && return 0
		i=$((i + 1)); sleep 0.1
	done
	SR=; return 1
}

sums() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
