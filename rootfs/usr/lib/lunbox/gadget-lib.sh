# Sourced by lunbox-prepare and lunbox-teardown: remove a configfs gadget, whoever made it.
# Order (Documentation/usb/gadget_configfs.rst "Cleaning up"): unbind the UDC, unlink functions
# from configs, remove config strings and configs, functions, gadget strings, then the gadget.

gadget_log() { echo "${LOG_TAG:-lunbox}: $*" >&2; }

remove_gadget() {
  local g=$1 f c s m
  [ -d "$g" ] || return 0
  gadget_log "removing gadget $(basename "$g")"
  if [ -s "$g/UDC" ] && [ -n "$(tr -d '[:space:]' <"$g/UDC")" ]; then
    echo "" >"$g/UDC" || gadget_log "warning: could not unbind $g"
  fi
  # os_desc links a config; configs link functions.
  for f in "$g"/os_desc/*; do [ -L "$f" ] && rm -f "$f"; done
  for c in "$g"/configs/*; do
    [ -d "$c" ] || continue
    for f in "$c"/*; do [ -L "$f" ] && rm -f "$f"; done
    for s in "$c"/strings/*; do [ -d "$s" ] && rmdir "$s"; done
    rmdir "$c"
  done
  for f in "$g"/functions/*; do
    [ -d "$f" ] || continue
    case $(basename "$f") in
      ffs.*)
        # A FunctionFS instance is busy while mounted: its daemon is gone, unmount it.
        while read -r src m type _; do
          if [ "$type" = functionfs ] && [ "$src" = "$(basename "$f" | cut -d. -f2-)" ]; then umount "$m" || true; fi
        done </proc/mounts
        ;;
    esac
    # Nested groups (rndis os_desc/interface.rndis/{Icons,Label}) go first.
    find "$f" -mindepth 1 -depth -type d -name '*' 2>/dev/null | while read -r s; do rmdir "$s" 2>/dev/null || true; done
    rmdir "$f"
  done
  for s in "$g"/strings/*; do [ -d "$s" ] && rmdir "$s"; done
  rmdir "$g"
}
