// targetcli interoperability: LIO's saveconfig.json (rtslib-fb root.py/tcm.py/target.py
// dump layout) to a lunbox config and back. Whatever has no lunbox (or LIO) equivalent is
// listed in `unmapped`, one line per thing, never dropped silently.
//
// saveconfig.json (rtslib-fb):
//   storage_objects[]  plugin fileio|block|ramdisk|pscsi|user:*, name, dev, size, wwn,
//                      write_back, readonly, nullio, attributes{block_size, emulate_*...}, alua_tpgs[]
//   targets[]          wwn, fabric (iscsi|usb_gadget|sbp|loopback|...), tpgs[]:
//                      tag, enable, attributes{generate_node_acls, authentication, ...},
//                      parameters{HeaderDigest, MaxBurstLength, ...}, chap_userid/password/
//                      mutual_userid/mutual_password, luns[]{index, storage_object
//                      "/backstores/<plugin>/<name>", alias, alua_tg_pt_gp_name},
//                      portals[]{ip_address, port, iser, offload},
//                      node_acls[]{node_wwn, tag, attributes, chap_*, mapped_luns[]{index, tpg_lun, write_protect, alias}}
//   fabric_modules[]   name, discovery_enable_auth, discovery_userid/password/mutual_userid/mutual_password

import type { AclConfig, BackstoreConfig, BlockSize, Chap, DigestName, IscsiParams, IscsiTargetConfig, LunboxConfig, MappedLun, Portal } from './schema';
import { backstoreBytes, validateConfig } from './validate';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const intOf = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
};
const boolOf = (v: unknown): boolean | undefined => {
  if (typeof v === 'boolean') return v;
  if (v === 1 || v === '1' || v === 'Yes' || v === 'yes') return true;
  if (v === 0 || v === '0' || v === 'No' || v === 'no') return false;
  return undefined;
};

export interface ImportResult {
  readonly config: LunboxConfig;
  /** Everything in the file that has no place in the lunbox config. */
  readonly unmapped: string[];
}

export interface ExportResult {
  readonly saveconfig: Obj;
  /** lunbox settings that LIO cannot express. */
  readonly unmapped: string[];
}

/** LIO plugin name ↔ lunbox backstore type. */
const PLUGIN_TO_TYPE = { fileio: 'file', block: 'block', ramdisk: 'ram' } as const;
const TYPE_TO_PLUGIN = { file: 'fileio', block: 'block', ram: 'ramdisk' } as const;

/** Storage object attributes lunbox maps; the rest are listed. */
const SO_ATTRS_MAPPED = ['block_size', 'emulate_write_cache', 'emulate_tpu'];
/** iSCSI TPG parameters (RFC 7143 keys) ↔ IscsiParams. */
const PARAMS: readonly { key: string; field: keyof IscsiParams; type: 'int' | 'bool' | 'digest' }[] = [
  { key: 'MaxRecvDataSegmentLength', field: 'maxRecvDataSegmentLength', type: 'int' },
  { key: 'MaxBurstLength', field: 'maxBurstLength', type: 'int' },
  { key: 'FirstBurstLength', field: 'firstBurstLength', type: 'int' },
  { key: 'ImmediateData', field: 'immediateData', type: 'bool' },
  { key: 'InitialR2T', field: 'initialR2T', type: 'bool' },
  { key: 'MaxOutstandingR2T', field: 'maxOutstandingR2T', type: 'int' },
  { key: 'HeaderDigest', field: 'headerDigest', type: 'digest' },
  { key: 'DataDigest', field: 'dataDigest', type: 'digest' },
];
/** LIO TPG parameters whose value lunbox fixes itself (listed only when not LIO's default). */
const PARAM_DEFAULTS: Readonly<Record<string, string>> = {
  AuthMethod: 'CHAP,None', DataPDUInOrder: 'Yes', DataSequenceInOrder: 'Yes', DefaultTime2Retain: '20',
  DefaultTime2Wait: '2', ErrorRecoveryLevel: '0', IFMarkInt: '2048~65535', IFMarker: 'No', MaxConnections: '1',
  MaxXmitDataSegmentLength: '262144', OFMarkInt: '2048~65535', OFMarker: 'No', TargetAlias: 'LIO Target',
};
/** TPG attributes lunbox maps (the rest listed when not LIO's default). */
const TPG_ATTR_DEFAULTS: Readonly<Record<string, number>> = {
  cache_dynamic_acls: 0, default_cmdsn_depth: 64, default_erl: 0, demo_mode_discovery: 1, demo_mode_write_protect: 1,
  fabric_prot_type: 0, login_keys_workaround: 1, login_timeout: 15, netif_timeout: 2, prod_mode_write_protect: 0,
  t10_pi: 0, tpg_enabled_sendtargets: 1,
};

const chapFrom = (o: Obj, prefix: string): Chap | undefined => {
  const userid = str(o[`${prefix}userid`]);
  const password = str(o[`${prefix}password`]);
  if (userid === undefined || password === undefined) return undefined;
  const mu = str(o[`${prefix}mutual_userid`]);
  const mp = str(o[`${prefix}mutual_password`]);
  return { userid, password, ...(mu !== undefined && mp !== undefined ? { mutualUserid: mu, mutualPassword: mp } : {}) };
};

const chapTo = (c: Chap | undefined, prefix: string): Obj => {
  if (!c) return {};
  return {
    [`${prefix}userid`]: c.userid,
    [`${prefix}password`]: c.password,
    ...(c.mutualUserid !== undefined ? { [`${prefix}mutual_userid`]: c.mutualUserid } : {}),
    ...(c.mutualPassword !== undefined ? { [`${prefix}mutual_password`]: c.mutualPassword } : {}),
  };
};

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Read LIO's saveconfig.json (parsed) into a validated lunbox config. */
export function importSaveconfig(raw: unknown): ImportResult {
  const unmapped: string[] = [];
  const note = (m: string): void => void unmapped.push(m);
  if (!isObj(raw)) throw new Error('not a saveconfig.json: expected a JSON object with storage_objects and targets');
  for (const k of Object.keys(raw)) if (!['storage_objects', 'targets', 'fabric_modules'].includes(k)) note(`${k}: unknown top-level key, not imported`);

  // --- storage objects -> backstores
  const backstores: BackstoreConfig[] = [];
  const soName = new Map<string, string>(); // "/backstores/<plugin>/<name>" -> lunbox name
  const taken = new Set<string>();
  for (const so of arr(raw['storage_objects'])) {
    if (!isObj(so)) continue;
    const plugin = String(so['plugin'] ?? '');
    const name0 = String(so['name'] ?? '');
    const where = `storage_objects ${plugin}/${name0}`;
    const type = PLUGIN_TO_TYPE[plugin as keyof typeof PLUGIN_TO_TYPE];
    if (!type) {
      note(`${where}: plugin '${plugin}' has no lunbox backstore (lunbox has file, block, ram): not imported, nor its LUNs`);
      continue;
    }
    let name = NAME_RE.test(name0) ? name0 : name0.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'so';
    if (taken.has(name)) name = `${name}-${type}`.slice(0, 64);
    for (let i = 2; taken.has(name); i++) name = `${name0.slice(0, 58)}-${i}`;
    if (name !== name0) note(`${where}: renamed to '${name}' (lunbox backstore names are unique across types and use A-Z a-z 0-9 _ . -)`);
    taken.add(name);
    soName.set(`/backstores/${plugin}/${name0}`, name);
    const b: BackstoreConfig = { name, type };
    const attrs = isObj(so['attributes']) ? so['attributes'] : {};
    const dev = str(so['dev']);
    if (type !== 'ram') {
      if (dev === undefined) note(`${where}: no 'dev'`);
      else b.path = dev;
    }
    const size = intOf(so['size']);
    if (size !== undefined && size > 0 && type !== 'block') b.size = size;
    if (type === 'ram' && size === undefined) note(`${where}: no size`);
    const bs = intOf(attrs['block_size']);
    if (bs !== undefined && bs !== 512) {
      if ([1024, 2048, 4096].includes(bs)) b.blockSize = bs as BlockSize;
      else note(`${where}: block_size ${bs} is not one lunbox offers (512, 1024, 2048, 4096): using 512`);
    }
    const wc = boolOf(attrs['emulate_write_cache']) ?? boolOf(so['write_back']);
    if (wc !== undefined) b.writeCache = wc;
    if (boolOf(attrs['emulate_tpu']) === true) {
      if (type === 'block') note(`${where}: emulate_tpu=1: lunbox block backstores cannot unmap; not imported`);
      else b.thinProvisioning = true;
    }
    if (boolOf(so['readonly']) === true) b.readOnly = true;
    const wwn = str(so['wwn']);
    if (wwn !== undefined) {
      if (/^[\x20-\x7e]{1,64}$/.test(wwn)) b.serial = wwn;
      else note(`${where}: wwn ${JSON.stringify(wwn)} does not fit a lunbox serial (64 printable characters)`);
    }
    if (boolOf(so['nullio']) === true) note(`${where}: nullio (reads return zeroes, writes are dropped) has no lunbox equivalent: imported as a normal RAM disk`);
    for (const k of ['aio', 'exclusive', 'config', 'control', 'hw_max_sectors']) {
      if (so[k] !== undefined && so[k] !== false && so[k] !== null) note(`${where}: ${k}=${JSON.stringify(so[k])} not mapped`);
    }
    const rest = Object.keys(attrs).filter((k) => !SO_ATTRS_MAPPED.includes(k));
    if (rest.length) note(`${where}: attributes lunbox sets itself, not imported: ${rest.map((k) => `${k}=${String(attrs[k])}`).join(', ')}`);
    const alua = arr(so['alua_tpgs']).filter((g) => isObj(g) && g['name'] !== 'default_tg_pt_gp');
    if (alua.length) note(`${where}: ALUA target port groups not imported: ${alua.map((g) => String((g as Obj)['name'])).join(', ')}`);
    backstores.push(b);
  }

  // --- discovery auth
  let discoveryAuth: Chap | undefined;
  for (const fm of arr(raw['fabric_modules'])) {
    if (!isObj(fm)) continue;
    if (fm['name'] !== 'iscsi') {
      note(`fabric_modules ${String(fm['name'])}: discovery settings of that fabric not imported`);
      continue;
    }
    if (boolOf(fm['discovery_enable_auth']) === true) {
      discoveryAuth = chapFrom(fm, 'discovery_');
      if (!discoveryAuth) note('fabric_modules iscsi: discovery_enable_auth without discovery_userid/discovery_password: not imported');
    }
  }

  // --- targets
  const targets: IscsiTargetConfig[] = [];
  const usbLuns: { lun: number; backstore: string }[] = [];
  let usbWwn: string | undefined;
  for (const t of arr(raw['targets'])) {
    if (!isObj(t)) continue;
    const fabric = String(t['fabric'] ?? '');
    const wwn = String(t['wwn'] ?? '');
    const tw = `targets ${fabric}/${wwn}`;
    if (fabric === 'usb_gadget') {
      if (usbWwn !== undefined) note(`${tw}: a second usb_gadget target: lunbox has one USB gadget; not imported`);
      usbWwn ??= wwn;
      for (const tpg of arr(t['tpgs'])) {
        if (!isObj(tpg)) continue;
        for (const l of arr(tpg['luns'])) {
          if (!isObj(l)) continue;
          const name = soName.get(String(l['storage_object']));
          const index = intOf(l['index']);
          if (name === undefined || index === undefined) note(`${tw}: LUN ${String(l['index'])} (${String(l['storage_object'])}) has no imported backstore`);
          else if (usbWwn === wwn) usbLuns.push({ lun: index, backstore: name });
        }
        if (tpg['nexus'] !== undefined) note(`${tw}: nexus ${String(tpg['nexus'])} not mapped (the USB host is the initiator)`);
      }
      continue;
    }
    if (fabric !== 'iscsi') {
      const why = fabric === 'sbp' ? 'the SBP-2 (FireWire) target is not built yet' : `lunbox has no '${fabric}' fabric`;
      note(`${tw}: ${why}; not imported`);
      continue;
    }
    for (const tpg of arr(t['tpgs'])) {
      if (!isObj(tpg)) continue;
      const tag = intOf(tpg['tag']) ?? 1;
      const where = `${tw} tpg ${tag}`;
      if (boolOf(tpg['enable']) === false) {
        note(`${where}: disabled in LIO (enable=false): not imported (lunbox has no disabled TPGs)`);
        continue;
      }
      const attrs = isObj(tpg['attributes']) ? tpg['attributes'] : {};
      const params = isObj(tpg['parameters']) ? tpg['parameters'] : {};
      const out: IscsiTargetConfig = { iqn: wwn, luns: [] };
      if (tag !== 1) out.tpgt = tag;
      const alias = str(params['TargetAlias']);
      if (alias !== undefined && alias !== PARAM_DEFAULTS['TargetAlias']) out.alias = alias;

      // LUNs
      for (const l of arr(tpg['luns'])) {
        if (!isObj(l)) continue;
        const index = intOf(l['index']);
        const name = soName.get(String(l['storage_object']));
        if (index === undefined || name === undefined) {
          note(`${where}: LUN ${String(l['index'])} -> ${String(l['storage_object'])}: its storage object was not imported`);
          continue;
        }
        out.luns.push({ lun: index, backstore: name });
        const g = str(l['alua_tg_pt_gp_name']);
        if (g !== undefined && g !== 'default_tg_pt_gp') note(`${where}: LUN ${index} ALUA group ${g} not mapped`);
      }
      const lunSet = new Set(out.luns.map((l) => l.lun));

      // Portals (LIO writes IPv6 in brackets)
      const portals: Portal[] = [];
      for (const p of arr(tpg['portals'])) {
        if (!isObj(p)) continue;
        const address = String(p['ip_address'] ?? '').replace(/^\[(.*)\]$/, '$1');
        const port = intOf(p['port']) ?? 3260;
        portals.push({ address, port });
        if (boolOf(p['iser']) === true) note(`${where}: portal ${address}:${port} iser=true: lunbox speaks iSCSI over TCP only`);
        if (boolOf(p['offload']) === true) note(`${where}: portal ${address}:${port} offload=true: no hardware offload in lunbox`);
      }
      if (portals.length) out.portals = portals;

      // Demo mode, authentication
      const demo = boolOf(attrs['generate_node_acls']);
      const authOn = boolOf(attrs['authentication']);
      const auth = chapFrom(tpg, 'chap_');
      if (auth) {
        out.auth = auth;
        if (authOn === false) note(`${where}: authentication=0 (LIO lets initiators skip CHAP): lunbox requires the imported TPG CHAP credentials`);
      }
      const acls: AclConfig[] = [];
      for (const a of arr(tpg['node_acls'])) {
        if (!isObj(a)) continue;
        const initiator = String(a['node_wwn'] ?? '');
        const acl: AclConfig = { initiator };
        const aAuth = chapFrom(a, 'chap_');
        if (aAuth) {
          acl.auth = aAuth;
          if (authOn === false) note(`${where}: ACL ${initiator}: authentication=0 in LIO; lunbox requires its CHAP credentials`);
        }
        const luns: MappedLun[] = [];
        for (const m of arr(a['mapped_luns'])) {
          if (!isObj(m)) continue;
          const index = intOf(m['index']);
          const tpgLun = intOf(m['tpg_lun']) ?? index;
          if (index === undefined || tpgLun === undefined) continue;
          if (!lunSet.has(tpgLun)) {
            note(`${where}: ACL ${initiator} mapped LUN ${index} -> TPG LUN ${tpgLun}, which was not imported`);
            continue;
          }
          luns.push({ lun: index, ...(tpgLun !== index ? { targetLun: tpgLun } : {}), ...(boolOf(m['write_protect']) === true ? { readOnly: true } : {}) });
        }
        acl.luns = luns;
        if (str(a['tag']) !== undefined) note(`${where}: ACL ${initiator} tag ${String(a['tag'])} (ACL groups) not mapped`);
        const aAttrs = isObj(a['attributes']) ? a['attributes'] : {};
        const aRest = Object.keys(aAttrs);
        if (aRest.length) note(`${where}: ACL ${initiator} attributes not imported: ${aRest.map((k) => `${k}=${String(aAttrs[k])}`).join(', ')}`);
        acls.push(acl);
      }
      if (acls.length) out.acls = acls;
      const demoOn = demo ?? acls.length === 0;
      if (demoOn !== !acls.length) out.demoMode = demoOn;
      if (demoOn && (intOf(attrs['demo_mode_write_protect']) ?? 1) === 1) {
        if (acls.length === 0 && out.luns.length) {
          for (const l of out.luns) l.readOnly = true;
          note(`${where}: demo_mode_write_protect=1: LUNs imported read-only (lunbox has no separate demo-mode write protect)`);
        } else if (out.luns.length) {
          note(`${where}: demo_mode_write_protect=1 with ACLs: lunbox cannot make only demo-mode initiators read-only; not mapped`);
        }
      }
      // cache_dynamic_acls only matters with generate_node_acls (demo mode), which lunbox maps.
      const handled = ['generate_node_acls', 'authentication', 'demo_mode_write_protect', ...(demoOn ? ['cache_dynamic_acls'] : [])];
      const aRest = Object.keys(attrs).filter((k) => !handled.includes(k) && intOf(attrs[k]) !== TPG_ATTR_DEFAULTS[k]);
      if (aRest.length) note(`${where}: attributes not imported: ${aRest.map((k) => `${k}=${String(attrs[k])}`).join(', ')}`);

      // Parameters
      const ip: IscsiParams = {};
      const rec = ip as Record<string, unknown>;
      for (const p of PARAMS) {
        const v = params[p.key];
        if (v === undefined) continue;
        if (p.type === 'int') {
          const n = intOf(v);
          if (n !== undefined) rec[p.field] = n;
        } else if (p.type === 'bool') {
          const b = boolOf(v);
          if (b !== undefined) rec[p.field] = b;
        } else {
          const list = String(v).split(',').map((d) => d.trim()).filter((d): d is DigestName => d === 'CRC32C' || d === 'None');
          if (list.length) rec[p.field] = list;
        }
      }
      if (Object.keys(ip).length) out.params = ip;
      // AuthMethod: lunbox asks for CHAP exactly when credentials are set (mapped above).
      const authMapped = (k: string): boolean => k === 'AuthMethod' && /^(CHAP|CHAP,None|None,CHAP)$/.test(String(params[k]));
      const pRest = Object.keys(params).filter((k) => !PARAMS.some((p) => p.key === k) && k !== 'TargetAlias' && !authMapped(k) && String(params[k]) !== PARAM_DEFAULTS[k]);
      if (pRest.length) note(`${where}: parameters lunbox negotiates itself, not imported: ${pRest.map((k) => `${k}=${String(params[k])}`).join(', ')}`);
      for (const k of Object.keys(tpg)) {
        if (!['tag', 'enable', 'attributes', 'parameters', 'luns', 'portals', 'node_acls', 'chap_userid', 'chap_password', 'chap_mutual_userid', 'chap_mutual_password'].includes(k)) note(`${where}: ${k} not mapped`);
      }
      targets.push(out);
    }
  }

  const config: LunboxConfig = { version: 1, backstores };
  if (targets.length || discoveryAuth) config.iscsi = { ...(discoveryAuth ? { discoveryAuth } : {}), targets };
  if (usbLuns.length || usbWwn !== undefined) {
    config.usb = { luns: usbLuns };
    if (usbWwn) note(`targets usb_gadget/${usbWwn}: LUNs imported into usb.luns; the wwn is not used (lunbox takes USB identity from usb.gadget)`);
  }
  return { config: validateConfig(config), unmapped };
}

export interface ExportOptions {
  /** Size of a file whose config has none (LIO fileio dumps always carry a size). */
  readonly sizeOf?: (path: string) => number | undefined;
}

/** Write a lunbox config as LIO's saveconfig.json. */
export function exportSaveconfig(cfg: LunboxConfig, opts: ExportOptions = {}): ExportResult {
  const unmapped: string[] = [];
  const note = (m: string): void => void unmapped.push(m);
  const storage: Obj[] = [];
  const pluginOf = new Map<string, string>();
  for (const b of cfg.backstores) {
    const plugin = TYPE_TO_PLUGIN[b.type];
    pluginOf.set(b.name, plugin);
    const so: Obj = { plugin, name: b.name };
    const attrs: Obj = { block_size: b.blockSize ?? 512 };
    const where = `backstores ${b.name}`;
    if (b.serial !== undefined) so['wwn'] = b.serial;
    if (b.type === 'ram') {
      so['size'] = backstoreBytes(b) ?? 0;
      so['nullio'] = false;
    } else {
      so['dev'] = b.path ?? '';
      if (b.type === 'file') {
        const size = backstoreBytes(b) ?? (b.path !== undefined ? opts.sizeOf?.(b.path) : undefined);
        if (size !== undefined) so['size'] = size;
        else note(`${where}: no size in the config and the file could not be measured: size left out (LIO needs it if the file is missing)`);
        so['write_back'] = b.writeCache ?? true;
        if (b.readOnly) note(`${where}: readOnly: LIO fileio has no read-only flag; exported ACL mapped LUNs are write-protected instead`);
      } else {
        so['readonly'] = b.readOnly === true;
        so['write_back'] = b.writeCache ?? false;
      }
    }
    if (b.writeCache !== undefined) attrs['emulate_write_cache'] = b.writeCache ? 1 : 0;
    if (b.thinProvisioning !== undefined) attrs['emulate_tpu'] = b.thinProvisioning ? 1 : 0;
    for (const k of ['vendor', 'product', 'revision'] as const) {
      if (b[k] !== undefined) note(`${where}: ${k} ${JSON.stringify(b[k])}: saveconfig.json does not carry the INQUIRY identity (LIO keeps it in configfs wwn/)`);
    }
    if (b.removable) note(`${where}: removable: LIO backstores have no removable-medium flag`);
    if (b.cdrom) note(`${where}: cdrom: LIO has no CD-ROM (MMC) emulation: exported as a read-only disk image`);
    so['attributes'] = attrs;
    storage.push(so);
  }
  const readOnlyBs = new Set(cfg.backstores.filter((b) => b.readOnly).map((b) => b.name));

  const targets: Obj[] = [];
  const byIqn = new Map<string, Obj[]>();
  for (const t of cfg.iscsi?.targets ?? []) {
    const where = `iscsi ${t.iqn} tpg ${t.tpgt ?? 1}`;
    const demo = t.demoMode ?? !t.acls?.length;
    const portals = (t.portals ?? cfg.iscsi?.portals ?? []).map((p) => ({
      ip_address: p.address.includes(':') ? `[${p.address}]` : p.address,
      port: p.port ?? 3260,
      iser: false,
      offload: false,
    }));
    // A read-only block backstore carries LIO's own `readonly`; a read-only file has no LIO flag.
    const roFiles = new Set(cfg.backstores.filter((b) => b.type === 'file' && readOnlyBs.has(b.name)).map((b) => b.name));
    const lunRo = new Map(t.luns.map((l) => [l.lun, l.readOnly === true || roFiles.has(l.backstore)]));
    const acls = (t.acls ?? []).map((a) => {
      const mapped = (a.luns ?? t.luns.map((l): MappedLun => ({ lun: l.lun }))).map((m) => {
        const tl = m.targetLun ?? m.lun;
        return { index: m.lun, tpg_lun: tl, write_protect: m.readOnly === true || lunRo.get(tl) === true };
      });
      return { node_wwn: a.initiator, attributes: {}, mapped_luns: mapped, ...chapTo(a.auth, 'chap_') };
    });
    const roLuns = t.luns.filter((l) => l.readOnly);
    if (roLuns.length && demo) {
      note(`${where}: read-only LUNs ${roLuns.map((l) => l.lun).join(', ')}: LIO has no per-LUN read-only; demo_mode_write_protect=1 makes all demo-mode LUNs read-only`);
    }
    const params: Obj = {};
    for (const p of PARAMS) {
      const v = t.params?.[p.field];
      if (v === undefined) continue;
      params[p.key] = p.type === 'bool' ? (v ? 'Yes' : 'No') : Array.isArray(v) ? v.join(',') : String(v);
    }
    if (t.alias !== undefined) params['TargetAlias'] = t.alias;
    if (t.auth || (t.acls ?? []).some((a) => a.auth)) params['AuthMethod'] = 'CHAP';
    for (const k of ['nopInInterval', 'nopInTimeout'] as const) {
      if (t.params?.[k] !== undefined) note(`${where}: ${k}=${t.params[k]}: LIO sets NOP-In timing per ACL attribute (nopin_timeout, nopin_response_timeout), not exported`);
    }
    const tpg: Obj = {
      tag: t.tpgt ?? 1,
      enable: true,
      attributes: {
        authentication: t.auth || (t.acls ?? []).some((a) => a.auth) ? 1 : 0,
        generate_node_acls: demo ? 1 : 0,
        cache_dynamic_acls: demo ? 1 : 0,
        demo_mode_write_protect: demo && roLuns.length > 0 && roLuns.length === t.luns.length ? 1 : 0,
      },
      parameters: params,
      luns: t.luns.map((l) => ({ index: l.lun, storage_object: `/backstores/${pluginOf.get(l.backstore) ?? 'fileio'}/${l.backstore}` })),
      portals,
      node_acls: acls,
      ...chapTo(t.auth, 'chap_'),
    };
    const key = t.iqn.toLowerCase();
    const list = byIqn.get(key);
    if (list) list.push(tpg);
    else {
      const tpgs = [tpg];
      byIqn.set(key, tpgs);
      targets.push({ wwn: t.iqn, fabric: 'iscsi', tpgs });
    }
  }

  const usb = cfg.usb as { luns?: { lun: number; backstore: string; cdrom?: boolean; readOnly?: boolean }[]; gadget?: unknown } | undefined;
  if (usb && typeof usb === 'object' && usb.luns?.length) {
    targets.push({
      wwn: 'naa.6001405c0ffee000',
      fabric: 'usb_gadget',
      tpgs: [{ tag: 1, enable: true, luns: usb.luns.map((l) => ({ index: l.lun, storage_object: `/backstores/${pluginOf.get(l.backstore) ?? 'fileio'}/${l.backstore}` })) }],
    });
    note('usb: exported as a usb_gadget target, which targetcli does not show (rtslib-fb#172); USB identity (usb.gadget) is not part of saveconfig.json');
    for (const l of usb.luns) {
      if (l.cdrom) note(`usb lun ${l.lun}: cdrom: LIO's usb_gadget has no CD-ROM mode`);
      if (l.readOnly) note(`usb lun ${l.lun}: readOnly: not expressible in a usb_gadget TPG`);
    }
  }
  if (cfg.sbp2 !== undefined) note('sbp2: not exported (not built yet)');
  if (cfg.console !== undefined) note('console: lunbox-only (serial shell), not part of saveconfig.json');
  if (cfg.control !== undefined) note('control: lunbox-only (control socket), not part of saveconfig.json');
  if (cfg.engine !== undefined) note('engine: lunbox-only, not part of saveconfig.json');
  if (cfg.iscsi?.portals?.length) {
    const unused = (cfg.iscsi.targets ?? []).every((t) => t.portals !== undefined);
    if (!unused) note('iscsi.portals: LIO has no global portals; copied into each TPG that used them');
  }

  const fabric_modules: Obj[] = [];
  const d = cfg.iscsi?.discoveryAuth;
  if (d) fabric_modules.push({ name: 'iscsi', discovery_enable_auth: true, ...chapTo(d, 'discovery_') });
  return { saveconfig: { fabric_modules, storage_objects: storage, targets }, unmapped };
}
