#!/bin/sh
# USB mass-storage throughput: lunbox (FunctionFS + BOT in Node) against the kernel's own
# f_mass_storage, on the same dummy_hcd loopback, the same backing file (tmpfs) and the same
# host driver (usb-storage), with sequential 1 MiB O_DIRECT dd reads and writes.
# Runs the two sides in alternating rounds (a fresh gadget each), prints one line per round
# and a table of the best and the median figures with the lunbox/kernel ratio (goal >= 0.9).
#
#   scripts/bench-usb.sh                 on the host: boots the VM (scripts/vm/run-in-vm.sh)
#   BENCH_MB=256 BENCH_RUNS=5 USB_SPEED=high|super BENCH_FIO=1   knobs (passed into the VM)
#   BENCH_TRACE=1   also trace 16 MiB of reads and 16 MiB of writes with the gadget tracepoints
#                   (ftrace) and print, per side, where a command's time goes. READ: CBW in ->
#                   data queued (the device's response), -> data and CSW taken (the bus), CSW
#                   -> next CBW (the host). WRITE: CBW in -> first data-out request queued, ->
#                   last data-out taken (the bus), -> CSW queued (the device's write), -> next
#                   CBW (the host)
# Under TCG the VM's CPU is max without ERMS (scripts/vm/run-in-vm.sh, VM_CPU): TCG runs REP
# MOVSB one byte per loop turn, which made every copy in the guest kernel 4-6x dearer than on
# real hardware; VM_CPU=max measures the old way (the header line says which).
# Inside the VM (VM=1) it runs the benchmark itself. Exit status 0 when both sides ran.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${VM:-}" ]; then
	export VM_PASSENV="${VM_PASSENV:-} BENCH_MB BENCH_RUNS USB_SPEED BENCH_FIO BENCH_TRACE LUNBOX_CMD"
	exec "$HERE/vm/run-in-vm.sh" "$0"
fi
REPO=$(cd "${VM_SCRIPT_DIR:-$HERE}/.." && pwd)
. "$REPO/scripts/vm/lib-usb.sh"
MB=${BENCH_MB:-256}
RUNS=${BENCH_RUNS:-5}

usb_modules
mkdir -p /mnt/bench
mount -t tmpfs -o size=$((MB + 32))M tmpfs /mnt/bench
IMG=/mnt/bench/backing.img
dd if=/dev/zero of=$IMG bs=1M count=$MB status=none
lunbox_bundle || { echo "bundle failed"; exit 1; }
say "kernel $(uname -r), accel=${VM_ACCEL:-?}, cpu $(grep -qw erms /proc/cpuinfo && echo with || echo without) ERMS, ${USB_SPEED:-high} speed, $MB MiB, $RUNS alternating rounds, dd bs=1M direct"

# dd_mbs ARGS...: run dd, print MB/s (decimal, as dd does)
dd_mbs() {
	dd "$@" 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") t = $(i - 1); b = $1 } END { if (t > 0) printf "%.1f", b / t / 1e6; else print "0" }'
}
# measure NAME DEV ROUND: one read and one write run, appended to RL_<NAME> / WL_<NAME>; the
# first round also runs fio (BENCH_FIO=1) and the trace (BENCH_TRACE=1)
measure() {
	r=$(dd_mbs if=/dev/$2 of=/dev/null bs=1M count=$MB iflag=direct)
	w=$(dd_mbs if=/dev/zero of=/dev/$2 bs=1M count=$MB oflag=direct)
	echo "  $1 round $3: read $r MB/s, write $w MB/s"
	eval "RL_$1=\"\${RL_$1:-} $r\"; WL_$1=\"\${WL_$1:-} $w\""
	[ "$3" = 1 ] || return 0
	if [ "${BENCH_FIO:-0}" = 1 ] && command -v fio >/dev/null; then
		for rw in read write; do
			fio --name=b --filename=/dev/$2 --rw=$rw --bs=1M --direct=1 --ioengine=libaio --iodepth=4 \
				--size=${MB}M --output-format=terse --terse-version=3 2>/dev/null |
				awk -F';' -v n="$1" -v rw=$rw '{ bw = (rw == "read") ? $7 : $48; printf "  %s fio %s qd4: %.1f MB/s\n", n, rw, bw * 1.024 / 1000 }'
		done
	fi
	[ "${BENCH_TRACE:-0}" = 1 ] && trace_commands "$1" "$2"
	return 0
}
# best LIST / median LIST [DECIMALS]: of the figures in LIST (1 decimal unless told)
best() { echo "$1" | tr ' ' '\n' | awk 'NF { if ($1 > m) m = $1 } END { printf "%.1f", m + 0 }'; }
median() { echo "$1" | tr ' ' '\n' | awk 'NF' | sort -n | awk -v f="%.${2:-1}f" '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) printf f, v[(NR + 1) / 2]; else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# trace_commands NAME DEV: 16 MiB of 1 MiB direct reads, then of writes, under the gadget
# tracepoints, then the mean of each phase of a command, from the requests the function queues
# on its endpoints. A CBW is a bulk-OUT request completing with 31 bytes (t0).
# READ: the first bulk-IN request queued (t1), the last bulk-IN request (data, or data and CSW)
# completes (t2), the next CBW (t3).
# WRITE: the first data-out request (longer than a packet) queued (t1), the last one completes
# (t2), the 13-byte CSW queued (t3), the next CBW (t4).
trace_commands() {
	T=/sys/kernel/tracing
	[ -d $T/events/gadget ] || mount -t tracefs none $T 2>/dev/null
	[ -d $T/events/gadget ] || { echo "  $1 trace: no gadget tracepoints (tracefs)"; return 0; }
	for rw in read write; do
		echo >$T/trace
		echo 1 >$T/events/gadget/usb_ep_queue/enable; echo 1 >$T/events/gadget/usb_gadget_giveback_request/enable
		echo 1 >$T/tracing_on
		if [ $rw = read ]; then
			dd if=/dev/$2 of=/dev/null bs=1M count=16 iflag=direct status=none
		else
			dd if=/dev/zero of=/dev/$2 bs=1M count=16 oflag=direct status=none
		fi
		echo 0 >$T/tracing_on; echo 0 >$T/events/gadget/enable
		awk -v n="$1" -v rw=$rw '
			/usb_ep_queue|usb_gadget_giveback_request/ {
				for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { ts = substr($i, 1, length($i) - 1) * 1000; ev = $(i + 1); ep = $(i + 2); break }
				for (i = 1; i <= NF; i++) if ($i == "length") { split($(i + 1), l, "/"); len = l[1] + 0; want = l[2] + 0 }
				q = (ev == "usb_ep_queue:"); inep = (ep ~ /in-/)
				if (!q && !inep && len == 31) {
					if (rw == "read" && t0 > 0 && t1 > 0 && big) { c++; a += t1 - t0; b += t2 - t1; h += ts - t2 }
					if (rw == "write" && t0 > 0 && t1 > 0 && t3 > 0) { c++; a += t1 - t0; b += t2 - t1; d += t3 - t2; h += ts - t3 }
					t0 = ts; t1 = 0; t2 = 0; t3 = 0; big = 0; next
				}
				if (rw == "read") {
					if (q && inep && t1 == 0) t1 = ts
					if (!q && inep) { t2 = ts; if (len > 13) big = 1 }
				} else {
					if (q && !inep && want > 512 && t1 == 0) t1 = ts
					if (!q && !inep && want > 512) t2 = ts
					if (q && inep && want == 13 && t1 > 0) t3 = ts
				}
			}
			END {
				if (c == 0) { printf "  %s trace: no %s cycles seen\n", n, toupper(rw); exit }
				if (rw == "read")
					printf "  %s trace (%d READs, mean ms): CBW -> data queued %.2f, -> data+CSW taken %.2f, -> next CBW %.2f; cycle %.2f\n", n, c, a / c, b / c, h / c, (a + b + h) / c
				else
					printf "  %s trace (%d WRITEs, mean ms): CBW -> data-out queued %.2f, -> data taken %.2f, -> CSW queued %.2f, -> next CBW %.2f; cycle %.2f\n", n, c, a / c, b / c, d / c, h / c, (a + b + d + h) / c
			}' $T/trace
	done
}

# --- the rounds: kernel f_mass_storage, then lunbox, RUNS times ----------------------------
# Alternating the two sides, each with a fresh gadget, spreads the VM's drift (the figures of
# one side move by +-20% over a run) over both instead of biasing the side measured later.
G=/sys/kernel/config/usb_gadget/msbench
kernel_up() {
	mkdir $G
	echo 0x1d6b >$G/idVendor; echo 0x0104 >$G/idProduct
	mkdir $G/strings/0x409 $G/configs/c.1 $G/configs/c.1/strings/0x409
	echo MSBENCH >$G/strings/0x409/serialnumber
	mkdir $G/functions/mass_storage.0
	echo $IMG >$G/functions/mass_storage.0/lun.0/file
	ln -s $G/functions/mass_storage.0 $G/configs/c.1/
	ls /sys/class/udc | head -n1 >$G/UDC
}
kernel_down() {
	KDEV=$DEV
	echo "" >$G/UDC
	rm $G/configs/c.1/mass_storage.0
	rmdir $G/configs/c.1/strings/0x409 $G/configs/c.1 $G/functions/mass_storage.0 $G/strings/0x409 $G
	wait_no_sd "$KDEV" || true
}
ok_kernel=1 ok_lunbox=1
for round in $(seq 1 "$RUNS"); do
	kernel_up
	if wait_sd Linux; then
		[ "$round" = 1 ] && say "kernel mass_storage: /dev/$DEV max_sectors_kb=$(cat /sys/block/$DEV/queue/max_sectors_kb)"
		measure kernel $DEV $round
	else
		echo "kernel mass_storage: no /dev/sdX"; ok_kernel=0
	fi
	kernel_down
	if lunbox_start --backstore file:$IMG && wait_sd LUNBOX; then
		if [ "$round" = 1 ]; then
			say "lunbox: /dev/$DEV max_sectors_kb=$(cat /sys/block/$DEV/queue/max_sectors_kb)"
			grep -E 'serve loop in C|JavaScript loop' "$LUNBOX_LOG" | head -n 1 | sed 's/^<[0-9]>/  /'
		fi
		measure lunbox $DEV $round
	else
		echo "lunbox: did not start or no /dev/sdX"; cat "$LUNBOX_LOG"; ok_lunbox=0
	fi
	LDEV=$DEV
	lunbox_stop TERM
	grep -E 'warn|error|usb profile' "$LUNBOX_LOG" | head -n 5
	wait_no_sd "$LDEV" >/dev/null 2>&1 || true
done
R_kernel=$(best "${RL_kernel:-}") W_kernel=$(best "${WL_kernel:-}") R_lunbox=$(best "${RL_lunbox:-}") W_lunbox=$(best "${WL_lunbox:-}")
MR_kernel=$(median "${RL_kernel:-}") MW_kernel=$(median "${WL_kernel:-}") MR_lunbox=$(median "${RL_lunbox:-}") MW_lunbox=$(median "${WL_lunbox:-}")

say "sequential 1 MiB O_DIRECT, MB/s ($RUNS alternating rounds: best, and median)"
printf '%-24s %8s %8s %10s %10s\n' "" read write "read med" "write med"
printf '%-24s %8s %8s %10s %10s\n' "kernel f_mass_storage" "$R_kernel" "$W_kernel" "$MR_kernel" "$MW_kernel"
printf '%-24s %8s %8s %10s %10s\n' "lunbox (FunctionFS+BOT)" "$R_lunbox" "$W_lunbox" "$MR_lunbox" "$MW_lunbox"
awk -v kr="$R_kernel" -v kw="$W_kernel" -v lr="$R_lunbox" -v lw="$W_lunbox" -v mkr="$MR_kernel" -v mkw="$MW_kernel" -v mlr="$MR_lunbox" -v mlw="$MW_lunbox" \
	'function q(a, b) { return (b > 0) ? a / b : 0 } BEGIN { printf "%-24s %8.2f %8.2f %10.2f %10.2f\n", "ratio lunbox/kernel", q(lr, kr), q(lw, kw), q(mlr, mkr), q(mlw, mkw) }'
# Each round's own ratio (lunbox over the kernel run just before it), whose median follows the
# VM's drift less than the ratio of the two sides' medians does. paired KERNEL_LIST LUNBOX_LIST
paired() {
	median "$(echo "$1 | $2" | awk '{ for (i = 1; $i != "|"; i++) k[i] = $i; for (j = i + 1; j <= NF; j++) if (k[j - i] > 0) printf "%f ", $j / k[j - i] }')" 2
}
printf '%-24s %8s %8s   (each round against the kernel run before it)\n' "median of round ratios" "$(paired "${RL_kernel:-}" "${RL_lunbox:-}")" "$(paired "${WL_kernel:-}" "${WL_lunbox:-}")"
awk -v a="$R_kernel" -v b="$R_lunbox" -v k="$ok_kernel" -v l="$ok_lunbox" 'BEGIN { exit !(a > 0 && b > 0 && k && l) }'
