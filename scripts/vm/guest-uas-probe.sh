#!/bin/sh
# Guest script for scripts/vm/run-in-vm.sh: what this kernel allows for USB Attached SCSI.
#   - FunctionFS: are BOT (alt 0) + UAS (alt 1) descriptors accepted, with and without the
#     UAS pipe usage descriptors (class descriptor 24h) the host's uas driver needs?
#   - is the kernel's own UAS-capable function (usb_f_tcm, CONFIG_USB_CONFIGFS_F_TCM) there?
#   - is GadgetFS (whole-device gadgets from userspace) there?
# Prints one line per finding. Usage: scripts/vm/run-in-vm.sh scripts/vm/guest-uas-probe.sh
REPO=$(cd "${VM_SCRIPT_DIR:-$(dirname "$0")}/../.." && pwd)
modprobe configfs 2>/dev/null; mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
modprobe libcomposite; modprobe usb_f_fs
echo "kernel $(uname -r)"
node "$REPO/scripts/vm/uas-probe.js" 2>&1
for m in usb_f_tcm gadgetfs target_core_mod; do
	echo "module $m: $(modinfo -n $m 2>/dev/null || echo 'not in this kernel')"
done
