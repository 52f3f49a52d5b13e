#!/usr/bin/env bash
# bench-iscsi.sh - lunbox and tgtd side by side on loopback, same initiator, same LUN size.
#
#   scripts/bench-iscsi.sh [-s SIZE] [-r REPS] [-o OUTDIR]
#
# Starts lunbox (RAM backstore) on 127.0.0.1:3290 and a private tgtd (a file on tmpfs,
# bstype rdwr: tgt has no RAM backstore) on 127.0.0.1:3291, both with a LUN of SIZE
# [1G], then measures with QEMU's iSCSI driver (qemu-img bench, libiscsi underneath):
#   seq read/write 1 MiB at QD1 and QD8 (MiB/s), random 4 KiB read/write at QD1 and QD32
#   (IOPS; a scrambled permutation of the region: no two requests near each other),
# each the median of REPS [3] runs, interleaving the two targets, plus each target's CPU
# time (utime+stime of the whole process from /proc) per MiB moved.
# Prints a table and the ratio lunbox/tgtd (>1 = lunbox faster; for CPU, <1 = lunbox cheaper).
#
# Needs: root (tgtd), node, Debian packages tgt, qemu-utils, qemu-block-extra, libiscsi-bin.
# DESTRUCTIVE only to the two scratch LUNs it creates.
set -uo pipefail
cd "$(dirname "$0")/.."
SIZE=1G; REPS=3; OUT=""
while getopts "s:r:o:h" o; do
  case $o in
    s) SIZE=$OPTARG ;; r) REPS=$OPTARG ;; o) OUT=$OPTARG ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
  esac
done
OUT=${OUT:-/tmp/lunbox-bench-$(date +%s)}
mkdir -p "$OUT"
die() { echo "bench-iscsi: $*" >&2; exit 1; }
for c in node qemu-img tgtd tgtadm iscsi-inq; do command -v $c >/dev/null || die "$c missing (apt-get install tgt qemu-utils qemu-block-extra libiscsi-bin)"; done
[ "$(id -u)" = 0 ] || die "tgtd needs root"
[ -f dist/lunbox.js ] || npx tsup >/dev/null || die "build failed (npm run build)"
BYTES=$(node -e "const m={k:1024,m:1048576,g:1073741824}; const s='$SIZE'.toLowerCase(); const u=s.slice(-1); console.log(m[u]? Number(s.slice(0,-1))*m[u] : Number(s))")
HZ=$(getconf CLK_TCK)

LB_IQN=iqn.2026-11.org.lunbox:bench; LB_PORT=3290
TGT_IQN=iqn.2026-11.org.lunbox:tgt-bench; TGT_PORT=3291
TMPFS=$OUT/tmpfs; LB_PID=""; TGT_PID=""
cleanup() {
  [ -n "$LB_PID" ] && kill "$LB_PID" 2>/dev/null
  if [ -n "$TGT_PID" ]; then
    TGT_IPC_SOCKET=$OUT/tgtd.sock tgtadm -C $TGT_PORT --op delete --mode system >/dev/null 2>&1
    sleep 0.3; kill -9 "$TGT_PID" 2>/dev/null
  fi
  mountpoint -q "$TMPFS" && umount "$TMPFS"
  wait 2>/dev/null
}
trap cleanup EXIT

# --- lunbox ---------------------------------------------------------------------------
node dist/lunbox.js serve --listen 127.0.0.1:$LB_PORT --backstore ram:$BYTES --iqn $LB_IQN >"$OUT/lunbox.url" 2>"$OUT/lunbox.log" &
LB_PID=$!
for _ in $(seq 50); do grep -q iscsi:// "$OUT/lunbox.url" && break; sleep 0.1; done
grep -q iscsi:// "$OUT/lunbox.url" || die "lunbox did not start: $(cat "$OUT/lunbox.log")"

# --- tgtd (private instance: own IPC socket, own port) ------------------------------------
mkdir -p "$TMPFS" && mount -t tmpfs -o size=$((BYTES / 1048576 + 64))M tmpfs "$TMPFS" || die "cannot mount tmpfs"
truncate -s "$BYTES" "$TMPFS/disk.img"
export TGT_IPC_SOCKET=$OUT/tgtd.sock
setsid tgtd -f -C $TGT_PORT --iscsi portal=127.0.0.1:$TGT_PORT </dev/null >"$OUT/tgtd.log" 2>&1 &
TGT_PID=$!
disown "$TGT_PID"   # no job-control noise when cleanup kills it
ADM=(tgtadm -C $TGT_PORT --lld iscsi)
for _ in $(seq 50); do "${ADM[@]}" --mode target --op show >/dev/null 2>&1 && break; sleep 0.1; done
"${ADM[@]}" --mode target --op new --tid 1 --targetname $TGT_IQN || die "tgtadm target new"
"${ADM[@]}" --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$TMPFS/disk.img" --bstype rdwr || die "tgtadm lu new"
"${ADM[@]}" --mode target --op bind --tid 1 --initiator-address ALL || die "tgtadm bind"

LB_URL=iscsi://127.0.0.1:$LB_PORT/$LB_IQN/0
TGT_URL=iscsi://127.0.0.1:$TGT_PORT/$TGT_IQN/1
iscsi-inq "$LB_URL" >/dev/null || die "lunbox LUN not reachable"
iscsi-inq "$TGT_URL" >/dev/null || die "tgtd LUN not reachable"

opts() {  # url -> qemu --image-opts
  local re='^iscsi://([^:/]+):([0-9]+)/([^/]+)/([0-9]+)$'; [[ $1 =~ $re ]]
  echo "driver=raw,size=$BYTES,file.driver=iscsi,file.transport=tcp,file.portal=${BASH_REMATCH[1]}:${BASH_REMATCH[2]},file.target=${BASH_REMATCH[3]},file.lun=${BASH_REMATCH[4]}"
}
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END{print (NR ? a[int((NR+1)/2)] : "nan")}'; }

# Scrambled 4 KiB step: an odd page count near pages/phi, coprime with the page count.
PAGES=$((BYTES / 4096))
K=$(awk -v n=$PAGES 'BEGIN{k=int(n*0.618); if (k%2==0) k++; print k}')
gcd() { local a=$1 b=$2 t; while [ "$b" -ne 0 ]; do t=$((a % b)); a=$b; b=$t; done; echo $a; }
while [ "$(gcd $K $PAGES)" != 1 ]; do K=$((K + 2)); done
STEP4K=$((K * 4096))

# one NAME URL PID count depth size step write -> prints "value cpu_ms_per_mib"
one() {
  local url=$1 pid=$2 c=$3 d=$4 s=$5 st=$6 w=$7 wargs=() k0 k1 out t
  [ "$w" = 1 ] && wargs=(-w --pattern=165)
  k0=$(ticks "$pid")
  out=$(timeout 300 qemu-img bench --image-opts "$(opts "$url")" -t none -c "$c" -d "$d" -s "$s" -S "$st" "${wargs[@]}" 2>&1)
  k1=$(ticks "$pid")
  t=$(echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
  [ -n "$t" ] || { echo "nan nan"; echo "# FAILED: $out" >>"$OUT/errors.log"; return; }
  awk -v c="$c" -v s="$s" -v t="$t" -v k=$((k1 - k0)) -v hz="$HZ" \
    'BEGIN{ mib=c*s/1048576; if (s>=1048576) v=mib/t; else v=c/t; printf "%.1f %.3f\n", v, (k/hz*1000)/mib }'
}

echo "# prefill both LUNs (sequential 1 MiB writes over the whole LUN)" >&2
one "$LB_URL" $LB_PID $((BYTES / 1048576)) 8 1048576 1048576 1 >/dev/null
one "$TGT_URL" $TGT_PID $((BYTES / 1048576)) 8 1048576 1048576 1 >/dev/null

# name depth size step write count unit
FIGURES=(
  "seq_read_1m_qd1   1  1048576 1048576  0 512   MiB/s"
  "seq_read_1m_qd8   8  1048576 1048576  0 1024  MiB/s"
  "seq_write_1m_qd1  1  1048576 1048576  1 512   MiB/s"
  "seq_write_1m_qd8  8  1048576 1048576  1 1024  MiB/s"
  "rand4k_read_qd1   1  4096    $STEP4K  0 8000  IOPS"
  "rand4k_read_qd32  32 4096    $STEP4K  0 40000 IOPS"
  "rand4k_write_qd1  1  4096    $STEP4K  1 8000  IOPS"
  "rand4k_write_qd32 32 4096    $STEP4K  1 40000 IOPS"
)
printf '%-18s %14s %14s %8s   %13s %13s %8s\n' figure lunbox tgtd lunbox/tgtd "lunbox CPU" "tgtd CPU" "lb/tgt" | tee "$OUT/results.txt"
printf '%-18s %14s %14s %8s   %13s %13s %8s\n' "" "" "" "(>1 wins)" "ms per MiB" "ms per MiB" "(<1 wins)" | tee -a "$OUT/results.txt"
for f in "${FIGURES[@]}"; do
  read -r name d s st w c unit <<<"$f"
  lbv=(); tgv=(); lbc=(); tgc=()
  for _ in $(seq "$REPS"); do
    sync
    read -r v cpu < <(one "$LB_URL" $LB_PID "$c" "$d" "$s" "$st" "$w"); lbv+=("$v"); lbc+=("$cpu")
    sync
    read -r v cpu < <(one "$TGT_URL" $TGT_PID "$c" "$d" "$s" "$st" "$w"); tgv+=("$v"); tgc+=("$cpu")
  done
  L=$(printf '%s\n' "${lbv[@]}" | median); T=$(printf '%s\n' "${tgv[@]}" | median)
  LC=$(printf '%s\n' "${lbc[@]}" | median); TC=$(printf '%s\n' "${tgc[@]}" | median)
  R=$(awk -v a="$L" -v b="$T" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "nan" }')
  RC=$(awk -v a="$LC" -v b="$TC" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "nan" }')
  printf '%-18s %14s %14s %8s   %13s %13s %8s\n' "$name" "$L $unit" "$T $unit" "$R" "$LC" "$TC" "$RC" | tee -a "$OUT/results.txt"
done
echo "# raw logs in $OUT" >&2
