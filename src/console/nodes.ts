// The shell's tree over the config model, like targetcli's:
//   /backstores/{block,file,ram}/<name>
//   /iscsi/<iqn>/tpg<N>/{luns/lun<N>, acls/<initiator>/mapped_lun<N>, portals/<addr:port>}
//   /usb/{gadget, luns/lun<N>}        (USB fabric: a change rebuilds the gadget; the host re-enumerates)
//   /sbp2                             (not built yet)
// A node is plain data naming what it points at; everything is looked up in the config
// on each command, so the tree is always the config (no cache to go stale).

import { backstoreBytes } from '../config/index';
import type { BackstoreConfig, BackstoreType, IscsiTargetConfig, LunboxConfig, Portal } from '../config/index';

export type Node =
  | { readonly kind: 'root' }
  | { readonly kind: 'backstores' }
  | { readonly kind: 'bs-type'; readonly type: BackstoreType }
  | { readonly kind: 'backstore'; readonly type: BackstoreType; readonly name: string }
  | { readonly kind: 'iscsi' }
  | { readonly kind: 'target'; readonly iqn: string }
  | { readonly kind: 'tpg' | 'luns' | 'acls' | 'portals'; readonly iqn: string; readonly tpgt: number }
  | { readonly kind: 'lun'; readonly iqn: string; readonly tpgt: number; readonly lun: number }
  | { readonly kind: 'acl'; readonly iqn: string; readonly tpgt: number; readonly initiator: string }
  | { readonly kind: 'mapped'; readonly iqn: string; readonly tpgt: number; readonly initiator: string; readonly lun: number }
  | { readonly kind: 'portal'; readonly iqn: string; readonly tpgt: number; readonly address: string; readonly port: number }
  | { readonly kind: 'usb' }
  | { readonly kind: 'usb-gadget' }
  | { readonly kind: 'usb-luns' }
  | { readonly kind: 'usb-lun'; readonly lun: number }
  | { readonly kind: 'sbp2' };

export type NodeKind = Node['kind'];

/** The `usb` section as the shell writes it (the USB fabric owns its final schema). */
export interface UsbSection {
  gadget?: Record<string, string | number>;
  luns?: UsbLun[];
}
export interface UsbLun {
  lun: number;
  backstore: string;
  readOnly?: boolean;
}

export const BACKSTORE_TYPES: readonly BackstoreType[] = ['block', 'file', 'ram'];
/** targetcli's plugin names, accepted in paths. */
const TYPE_ALIASES: Readonly<Record<string, BackstoreType>> = { fileio: 'file', ramdisk: 'ram', iblock: 'block', block: 'block', file: 'file', ram: 'ram' };

export const sameIqn = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

export function usbOf(cfg: LunboxConfig): UsbSection {
  const u = cfg.usb;
  return typeof u === 'object' && u !== null ? (u as UsbSection) : {};
}

export function findTarget(cfg: LunboxConfig, iqn: string, tpgt: number): IscsiTargetConfig | undefined {
  return cfg.iscsi?.targets.find((t) => sameIqn(t.iqn, iqn) && (t.tpgt ?? 1) === tpgt);
}

export function tpgsOf(cfg: LunboxConfig, iqn: string): IscsiTargetConfig[] {
  return (cfg.iscsi?.targets ?? []).filter((t) => sameIqn(t.iqn, iqn)).sort((a, b) => (a.tpgt ?? 1) - (b.tpgt ?? 1));
}

/** Target iqns in config order, each once. */
export function targetIqns(cfg: LunboxConfig): string[] {
  const out: string[] = [];
  for (const t of cfg.iscsi?.targets ?? []) if (!out.some((i) => sameIqn(i, t.iqn))) out.push(t.iqn);
  return out;
}

/** The portals a target listens on: its own, else the iscsi section's. */
export function effectivePortals(cfg: LunboxConfig, t: IscsiTargetConfig): { portals: Required<Portal>[]; inherited: boolean } {
  const own = t.portals;
  const list = own ?? cfg.iscsi?.portals ?? [];
  return { portals: list.map((p) => ({ address: p.address, port: p.port ?? 3260 })), inherited: own === undefined };
}

export const portalName = (p: { address: string; port: number }): string => (p.address.includes(':') ? `[${p.address}]:${p.port}` : `${p.address}:${p.port}`);

export function parsePortalName(s: string): { address: string; port: number } | undefined {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
  if (m) return { address: m[1] ?? '', port: m[2] === undefined ? 3260 : Number(m[2]) };
  // A bare IPv6 address (several colons) without a port.
  if ((s.match(/:/g) ?? []).length > 1) return { address: s, port: 3260 };
  return undefined;
}

/** Every child of a node, with its name. */
export function children(cfg: LunboxConfig, n: Node): { name: string; node: Node }[] {
  switch (n.kind) {
    case 'root':
      return [
        { name: 'backstores', node: { kind: 'backstores' } },
        { name: 'iscsi', node: { kind: 'iscsi' } },
        { name: 'usb', node: { kind: 'usb' } },
        { name: 'sbp2', node: { kind: 'sbp2' } },
      ];
    case 'backstores':
      return BACKSTORE_TYPES.map((type) => ({ name: type, node: { kind: 'bs-type', type } }));
    case 'bs-type':
      return cfg.backstores.filter((b) => b.type === n.type).map((b) => ({ name: b.name, node: { kind: 'backstore', type: n.type, name: b.name } }));
    case 'iscsi':
      return targetIqns(cfg).map((iqn) => ({ name: iqn, node: { kind: 'target', iqn } }));
    case 'target':
      return tpgsOf(cfg, n.iqn).map((t) => ({ name: `tpg${t.tpgt ?? 1}`, node: { kind: 'tpg', iqn: t.iqn, tpgt: t.tpgt ?? 1 } }));
    case 'tpg':
      return (['acls', 'luns', 'portals'] as const).map((kind) => ({ name: kind, node: { kind, iqn: n.iqn, tpgt: n.tpgt } }));
    case 'luns': {
      const t = findTarget(cfg, n.iqn, n.tpgt);
      return [...(t?.luns ?? [])].sort((a, b) => a.lun - b.lun).map((l) => ({ name: `lun${l.lun}`, node: { kind: 'lun', iqn: n.iqn, tpgt: n.tpgt, lun: l.lun } }));
    }
    case 'acls': {
      const t = findTarget(cfg, n.iqn, n.tpgt);
      return (t?.acls ?? []).map((a) => ({ name: a.initiator, node: { kind: 'acl', iqn: n.iqn, tpgt: n.tpgt, initiator: a.initiator } }));
    }
    case 'acl': {
      const t = findTarget(cfg, n.iqn, n.tpgt);
      const a = t?.acls?.find((x) => sameIqn(x.initiator, n.initiator));
      if (!t || !a) return [];
      const luns = a.luns ?? t.luns.map((l) => ({ lun: l.lun }));
      return [...luns].sort((x, y) => x.lun - y.lun).map((m) => ({ name: `mapped_lun${m.lun}`, node: { kind: 'mapped', iqn: n.iqn, tpgt: n.tpgt, initiator: a.initiator, lun: m.lun } }));
    }
    case 'portals': {
      const t = findTarget(cfg, n.iqn, n.tpgt);
      if (!t) return [];
      return effectivePortals(cfg, t).portals.map((p) => ({ name: portalName(p), node: { kind: 'portal', iqn: n.iqn, tpgt: n.tpgt, address: p.address, port: p.port } }));
    }
    case 'usb':
      return [
        { name: 'gadget', node: { kind: 'usb-gadget' } },
        { name: 'luns', node: { kind: 'usb-luns' } },
      ];
    case 'usb-luns':
      return [...(usbOf(cfg).luns ?? [])].sort((a, b) => a.lun - b.lun).map((l) => ({ name: `lun${l.lun}`, node: { kind: 'usb-lun', lun: l.lun } }));
    default:
      return [];
  }
}

/** The child called `name` (case-insensitive for iSCSI names, targetcli aliases for types). */
export function child(cfg: LunboxConfig, n: Node, name: string): Node | undefined {
  if (n.kind === 'backstores') {
    const type = TYPE_ALIASES[name];
    return type ? { kind: 'bs-type', type } : undefined;
  }
  const list = children(cfg, n);
  const exact = list.find((c) => c.name === name);
  if (exact) return exact.node;
  const folded = list.find((c) => c.name.toLowerCase() === name.toLowerCase());
  if (folded) return folded.node;
  if (n.kind === 'portals') {
    const p = parsePortalName(name);
    if (p) return list.find((c) => c.node.kind === 'portal' && c.node.address === p.address && c.node.port === p.port)?.node;
  }
  return undefined;
}

/** Normalise `arg` against the current directory into path segments ('..', '.', '/'). */
export function joinPath(cwd: readonly string[], arg: string): string[] {
  const out = arg.startsWith('/') ? [] : [...cwd];
  for (const seg of arg.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return out;
}

/** Resolve segments to a node and its canonical segments, or say which segment is missing. */
export function resolve(cfg: LunboxConfig, segs: readonly string[]): { node: Node; path: string[] } | { missing: string; at: string } {
  let node: Node = { kind: 'root' };
  const path: string[] = [];
  for (const seg of segs) {
    const next = child(cfg, node, seg);
    if (!next) return { missing: seg, at: '/' + path.join('/') };
    node = next;
    path.push(childName(cfg, node) ?? seg);
  }
  return { node, path };
}

/** The canonical name of a node under its parent. */
function childName(cfg: LunboxConfig, n: Node): string | undefined {
  switch (n.kind) {
    case 'backstores':
    case 'iscsi':
    case 'usb':
    case 'sbp2':
    case 'luns':
    case 'acls':
    case 'portals':
      return n.kind;
    case 'usb-gadget':
      return 'gadget';
    case 'usb-luns':
      return 'luns';
    case 'bs-type':
      return n.type;
    case 'backstore':
      return n.name;
    case 'target':
      return tpgsOf(cfg, n.iqn)[0]?.iqn ?? n.iqn;
    case 'tpg':
      return `tpg${n.tpgt}`;
    case 'lun':
    case 'usb-lun':
      return `lun${n.lun}`;
    case 'acl':
      return n.initiator;
    case 'mapped':
      return `mapped_lun${n.lun}`;
    case 'portal':
      return portalName(n);
    case 'root':
      return undefined;
  }
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    i++;
  }
  if (v >= 1024 && i < units.length - 1) {
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v.toFixed(1)}${units[i]}`;
  }
  return `${v}${units[i]}`;
}

function backstoreSummary(b: BackstoreConfig): string {
  let size: string | undefined;
  try {
    const bytes = backstoreBytes(b);
    size = bytes === undefined ? undefined : humanBytes(bytes);
  } catch {
    size = String(b.size);
  }
  if (b.cdrom === true) return `cdrom ${b.path ?? '(no disc)'}`;
  const parts = [b.path, size ? `(${size})` : undefined, b.readOnly ? 'ro' : undefined, b.blockSize && b.blockSize !== 512 ? `bs=${b.blockSize}` : undefined];
  return parts.filter((p) => p !== undefined).join(' ');
}

/** Where a backstore is used, as paths (for ls and for refusing a delete). */
export function backstoreUsers(cfg: LunboxConfig, name: string): string[] {
  const out: string[] = [];
  for (const t of cfg.iscsi?.targets ?? []) for (const l of t.luns) if (l.backstore === name) out.push(`/iscsi/${t.iqn}/tpg${t.tpgt ?? 1}/luns/lun${l.lun}`);
  for (const l of usbOf(cfg).luns ?? []) if (l.backstore === name) out.push(`/usb/luns/lun${l.lun}`);
  return out;
}

/** The bracketed text `ls` prints after a node. */
export function summary(cfg: LunboxConfig, n: Node): string {
  switch (n.kind) {
    case 'root':
    case 'backstores':
    case 'tpg':
    case 'usb':
      return tpgSummary(cfg, n) ?? '...';
    case 'bs-type':
      return `Storage Objects: ${cfg.backstores.filter((b) => b.type === n.type).length}`;
    case 'backstore': {
      const b = cfg.backstores.find((x) => x.name === n.name);
      if (!b) return '?';
      const used = backstoreUsers(cfg, b.name).length;
      return `${backstoreSummary(b) || b.type} ${used ? 'activated' : 'deactivated'}`.trim();
    }
    case 'iscsi':
      return `Targets: ${targetIqns(cfg).length}`;
    case 'target':
      return `TPGs: ${tpgsOf(cfg, n.iqn).length}`;
    case 'luns':
      return `LUNs: ${findTarget(cfg, n.iqn, n.tpgt)?.luns.length ?? 0}`;
    case 'lun': {
      const l = findTarget(cfg, n.iqn, n.tpgt)?.luns.find((x) => x.lun === n.lun);
      const b = cfg.backstores.find((x) => x.name === l?.backstore);
      return l ? `${b?.type ?? '?'}/${l.backstore}${b?.cdrom === true ? ' cdrom' : ''}${l.readOnly ? ' ro' : ''}` : '?';
    }
    case 'acls':
      return `ACLs: ${findTarget(cfg, n.iqn, n.tpgt)?.acls?.length ?? 0}`;
    case 'acl': {
      const a = findTarget(cfg, n.iqn, n.tpgt)?.acls?.find((x) => sameIqn(x.initiator, n.initiator));
      if (!a) return '?';
      return `${a.luns ? `Mapped LUNs: ${a.luns.length}` : 'Mapped LUNs: all'}${a.auth ? ', auth' : ''}`;
    }
    case 'mapped': {
      const a = findTarget(cfg, n.iqn, n.tpgt)?.acls?.find((x) => sameIqn(x.initiator, n.initiator));
      const m = a?.luns?.find((x) => x.lun === n.lun);
      const tl = m?.targetLun ?? n.lun;
      return `lun${tl} ${m?.readOnly ? 'ro' : 'rw'}`;
    }
    case 'portals': {
      const t = findTarget(cfg, n.iqn, n.tpgt);
      const e = t ? effectivePortals(cfg, t) : undefined;
      return `Portals: ${e?.portals.length ?? 0}${e?.inherited && e.portals.length ? ' (from /iscsi)' : ''}`;
    }
    case 'portal':
      return 'OK';
    case 'usb-gadget': {
      const g = usbOf(cfg).gadget ?? {};
      const hex = (v: string | number | undefined, d: number): string => (typeof v === 'number' ? v.toString(16).padStart(4, '0') : (v ?? d.toString(16).padStart(4, '0')).replace(/^0x/i, ''));
      return `${hex(g['vendorId'] ?? g['idVendor'], 0x1d6b)}:${hex(g['productId'] ?? g['idProduct'], 0x0104)} ${g['product'] ?? 'lunbox storage'}`;
    }
    case 'usb-luns':
      return `LUNs: ${usbOf(cfg).luns?.length ?? 0}`;
    case 'usb-lun': {
      const l = usbOf(cfg).luns?.find((x) => x.lun === n.lun);
      const cd = cfg.backstores.find((b) => b.name === l?.backstore)?.cdrom === true;
      return l ? `${l.backstore}${cd ? ' cdrom' : ''}${l.readOnly ? ' ro' : ''}` : '?';
    }
    case 'sbp2':
      return 'not yet: SBP-2 is not built';
  }
}

function tpgSummary(cfg: LunboxConfig, n: Node): string | undefined {
  if (n.kind !== 'tpg') return undefined;
  const t = findTarget(cfg, n.iqn, n.tpgt);
  if (!t) return undefined;
  const demo = t.demoMode ?? !t.acls?.length;
  return [demo ? 'demo mode' : 'ACLs only', t.auth ? 'auth' : 'no-auth'].join(', ');
}
