// The lunbox management shell: a pure command interpreter over the config model.
// One Shell per user session (it has a current directory); all sessions of a daemon share
// one ConfigModel, which applies every change live through the Runtime interface.
// No I/O here: exec() returns the text to print, complete() the tab completions.

import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { ConfigError, MAX_LUN, redactSecrets } from '../config/index';
import type { BackstoreConfig, BackstoreType, IscsiTargetConfig, LunboxConfig, MappedLun } from '../config/index';
import { VERSION } from '../version';
import { findKey, groupsOf, parseValue, showValue } from './groups';
import type { Group } from './groups';
import type { ApplyReport, ConfigModel } from './model';
import {
  backstoreUsers, child, children, effectivePortals, findTarget, joinPath, parsePortalName, portalName, resolve,
  sameIqn, summary, targetIqns, tpgsOf, usbOf,
} from './nodes';
import type { Node, UsbSection } from './nodes';
import { ShellError, quoteWord, splitKeyValues, splitWords } from './words';

export interface ShellResult {
  /** Text to print (lines joined by '\n', no trailing newline). */
  readonly output: string;
  readonly ok: boolean;
  /** The user asked to leave (exit). */
  readonly exit?: boolean;
}

export interface Completion {
  /** Offset in the line where the replaced word starts. */
  readonly start: number;
  /** Full replacements for line.slice(start). A directory ends with '/', a key with '='. */
  readonly candidates: readonly string[];
}

interface Ctx {
  readonly node: Node;
  readonly path: readonly string[];
  readonly args: readonly string[];
}

interface CommandDef {
  readonly usage: string;
  readonly help: string;
  /** Nodes where it applies (undefined: everywhere). */
  readonly where?: (n: Node, cfg: LunboxConfig) => boolean;
  /** Why it does not apply at a node, when more can be said than "commands here: ...". */
  readonly whyNot?: (cfg: LunboxConfig) => string;
  run(this: Shell, c: Ctx): Promise<string> | string;
}

const CONTAINERS: readonly Node['kind'][] = ['bs-type', 'iscsi', 'target', 'luns', 'acls', 'acl', 'portals', 'usb-luns', 'sbp2'];
const isContainer = (n: Node): boolean => CONTAINERS.includes(n.kind);
const LS_WIDTH = 78;

const NODE_HELP: Readonly<Record<Node['kind'], string>> = {
  root: 'The top of the tree. backstores: storage; iscsi: iSCSI targets; usb: the USB gadget; sbp2: FireWire.',
  backstores: 'Storage objects by type: block (a device), file (an image file), ram (memory, lost at exit).',
  'bs-type': 'Backstores of one type. create NAME ... adds one; delete NAME removes an unused one.',
  backstore: 'One backstore. get/set attribute: path, size, readOnly, blockSize, writeCache, cdrom, INQUIRY identity. A CD-ROM (cdrom=true): changemedium ISO, eject.',
  iscsi: 'iSCSI targets. create [IQN] adds one (a name is generated without IQN); set discovery_auth for SendTargets CHAP.',
  target: 'An iSCSI target. Its target portal groups: tpg1, ... (create [TAG] adds one).',
  tpg: 'A target portal group: luns, acls, portals. set attribute demoMode/alias, set parameter (RFC 7143 keys), set auth (CHAP).',
  luns: 'The LUNs of this TPG. create BACKSTORE [LUN] exports a backstore; delete lunN removes it. Logged-in initiators see the change at once (unit attention 3F/0E).',
  lun: 'One LUN. set attribute readOnly=true|false. A CD-ROM LUN: changemedium ISO puts in another disc, eject takes it out.',
  acls: 'Initiators allowed in (when any exist, demo mode is off unless set on). create INITIATOR_IQN; delete INITIATOR_IQN.',
  acl: 'One initiator: its mapped LUNs (default: every LUN under its own number) and its CHAP (set auth).',
  mapped: 'A LUN as this initiator sees it. set attribute readOnly=true|false targetLun=N.',
  portals: 'Addresses this TPG listens on. create ADDRESS[:PORT] listens at once; delete ADDRESS:PORT refuses new connections at once (sessions logged in through it stay until they log out).',
  portal: 'One listening address.',
  usb:
    'The USB gadget: its identity (gadget) and its LUNs. Changes apply live by rebuilding the gadget: the USB host sees the device disconnect and ' +
    'reconnect with the new LUNs (so does a change of a backstore it exports). A CD-ROM disc change is a medium change, no reconnect (changemedium).',
  'usb-gadget': 'USB identity: set attribute vendorId=0x1d6b productId=0x0104 manufacturer=... product=... serial=... (live: the host sees the device reconnect).',
  'usb-luns': 'USB mass-storage LUNs (0..15): create BACKSTORE [LUN] [readOnly=true] (or lun=N backstore=NAME); delete lunN. Live: the host sees the device reconnect. A CD-ROM is a backstore with cdrom=true.',
  'usb-lun': 'One USB LUN. set attribute readOnly (live: the host sees the device reconnect). A CD-ROM LUN: changemedium ISO, eject.',
  sbp2: 'not yet: the SBP-2 (FireWire) target is not built.',
};

function lunNumber(text: string, what = 'LUN'): number {
  const m = /^(?:mapped_)?(?:lun)?(\d+)$/i.exec(text);
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 0 && n <= MAX_LUN)) throw new ShellError(`${what} '${text}': expected a number 0..${MAX_LUN} (or lunN)`);
  return n;
}

function reportLines(summaryLine: string, r: ApplyReport, live: boolean): string {
  const out = [summaryLine];
  for (const n of r.notes) out.push(`note: ${n}`);
  if (!live) out.push('note: no daemon attached: the change is in this config only (saveconfig to keep it)');
  return out.join('\n');
}

function generatedIqn(): string {
  return `iqn.2026-11.org.lunbox:${randomBytes(4).toString('hex')}`;
}

function nextFree(used: Iterable<number>, from = 0): number {
  const set = new Set(used);
  let n = from;
  while (set.has(n)) n++;
  return n;
}

export class Shell {
  private cwd: string[] = [];
  readonly commands: Readonly<Record<string, CommandDef>>;

  constructor(readonly model: ConfigModel) {
    this.commands = COMMANDS;
  }

  get cfg(): LunboxConfig {
    return this.model.config;
  }

  /** Current directory as a path, '/' at the top. */
  get pwd(): string {
    return '/' + this.here().path.join('/');
  }

  /** The prompt, targetcli-style with a shortened path. */
  get prompt(): string {
    let p = this.pwd;
    if (p.length > 40) p = '...' + p.slice(-37);
    return `lunbox ${p}> `;
  }

  /** The node of the current directory; climbs up when it was deleted meanwhile (another session). */
  private here(): { node: Node; path: string[] } {
    for (;;) {
      const r = resolve(this.cfg, this.cwd);
      if ('node' in r) {
        this.cwd = r.path;
        return r;
      }
      this.cwd.pop();
    }
  }

  /** The node at PATH relative to here (throws ShellError when missing). */
  at(arg: string | undefined): { node: Node; path: string[] } {
    const here = this.here();
    if (arg === undefined) return here;
    const r = resolve(this.cfg, joinPath(here.path, arg));
    if ('missing' in r) throw new ShellError(`no such path: ${arg} (nothing called '${r.missing}' in ${r.at})`);
    return r;
  }

  /** Run one command line. Never throws: errors come back as ok=false with a message. */
  async exec(line: string): Promise<ShellResult> {
    try {
      const { words, open } = splitWords(line);
      if (open) throw new ShellError('unterminated quote');
      if (words.length === 0) return { output: '', ok: true };
      let ctxPath: string | undefined;
      let name = words[0]!;
      let args = words.slice(1);
      // targetcli form: PATH [COMMAND ARGS]; a bare path is cd.
      if (!this.commands[name] && (name.startsWith('/') || name.startsWith('.') || this.isChild(name))) {
        ctxPath = name;
        name = words[1] ?? 'cd';
        args = words[1] === undefined ? [ctxPath] : words.slice(2);
        if (name === 'cd') ctxPath = undefined;
      }
      const def = this.commands[name];
      if (!def) throw new ShellError(`unknown command '${name}'; commands here: ${this.commandsFor(this.at(ctxPath).node).join(', ')} (help for more)`);
      const at = this.at(ctxPath);
      if (def.where && !def.where(at.node, this.cfg)) {
        const why = def.whyNot ? `: ${def.whyNot(this.cfg)}` : '';
        throw new ShellError(`'${name}' does not apply at /${at.path.join('/')}${why}; commands here: ${this.commandsFor(at.node).join(', ')}`);
      }
      if (name === 'exit' || name === 'quit') return { output: await def.run.call(this, { ...at, args }), ok: true, exit: true };
      return { output: await def.run.call(this, { ...at, args }), ok: true };
    } catch (err) {
      if (err instanceof ShellError) return { output: `error: ${err.message}`, ok: false };
      if (err instanceof ConfigError) {
        return { output: `error: the change was refused:\n${err.errors.map((i) => `  - ${i.path ? i.path + ': ' : ''}${i.message}`).join('\n')}`, ok: false };
      }
      // A disc change through set attribute path= that the host's PREVENT refused.
      if ((err as { code?: unknown }).code === 'EPREVENTED') return { output: `error: ${(err as Error).message}; changemedium ISO force=true changes it anyway`, ok: false };
      return { output: `error: ${(err as Error).message}`, ok: false };
    }
  }

  private isChild(name: string): boolean {
    return child(this.cfg, this.here().node, name) !== undefined;
  }

  commandsFor(n: Node): string[] {
    return Object.keys(this.commands).filter((c) => c !== 'quit' && (this.commands[c]!.where?.(n, this.cfg) ?? true));
  }

  // ------------------------------------------------------------------ completion

  /** Completions for the word before the end of `line`. */
  complete(line: string): Completion {
    const { words, lastStart } = splitWords(line);
    const endsBlank = lastStart === line.length;
    const cur = endsBlank ? '' : (words[words.length - 1] ?? '');
    const before = endsBlank ? words : words.slice(0, -1);
    const out = (cands: string[]): Completion => ({ start: lastStart, candidates: [...new Set(cands.filter((c) => c.startsWith(cur)))].sort() });
    try {
      let ctxPath: string | undefined;
      let rest = before;
      if (rest.length > 0 && !this.commands[rest[0]!] && (rest[0]!.startsWith('/') || rest[0]!.startsWith('.') || this.isChild(rest[0]!))) {
        ctxPath = rest[0]!;
        rest = rest.slice(1);
      }
      const at = this.at(ctxPath);
      if (rest.length === 0) {
        if (ctxPath === undefined && (cur.startsWith('/') || cur.startsWith('.') || cur.includes('/'))) return out(this.completePath(cur));
        const cmds = this.commandsFor(at.node).map((c) => c);
        return out(ctxPath === undefined ? [...cmds, ...this.completePath(cur).filter(() => cur !== '')] : cmds);
      }
      const cmd = rest[0]!;
      const args = rest.slice(1);
      return out(this.completeArgs(cmd, args, cur, at.node));
    } catch {
      return { start: lastStart, candidates: [] };
    }
  }

  private completePath(word: string): string[] {
    const slash = word.lastIndexOf('/');
    const dir = slash < 0 ? '' : word.slice(0, slash + 1);
    const r = resolve(this.cfg, joinPath(this.here().path, dir === '' ? '.' : dir));
    if (!('node' in r)) return [];
    const names = children(this.cfg, r.node).map((c) => `${dir}${quoteIfNeeded(c.name)}/`);
    if (word === '' || word.endsWith('/') || dir !== '') names.push(...(dir === '' ? ['../'] : []));
    return names;
  }

  private completeArgs(cmd: string, args: readonly string[], cur: string, n: Node): string[] {
    switch (cmd) {
      case 'cd':
      case 'ls':
      case 'info':
        return args.length === 0 ? this.completePath(cur) : [];
      case 'help':
        return args.length === 0 ? Object.keys(this.commands) : [];
      case 'delete':
        return args.length === 0 ? children(this.cfg, n).map((c) => quoteIfNeeded(c.name)) : [];
      case 'get':
      case 'set': {
        const groups = groupsOf(n);
        if (args.length === 0) return groups.map((g) => g.name);
        const g = groups.find((x) => x.name === args[0]);
        if (!g) return [];
        if (cmd === 'get') return g.keys.map((s) => s.key);
        const eq = cur.indexOf('=');
        if (eq > 0) {
          const spec = findKey(g, cur.slice(0, eq));
          const vals = spec?.values ?? (spec?.type === 'bool' ? ['true', 'false'] : []);
          return vals.map((v) => `${cur.slice(0, eq + 1)}${v}`);
        }
        return g.keys.filter((s) => !s.readOnly).map((s) => `${s.key}=`);
      }
      case 'create':
        return this.completeCreate(n, args, cur);
      case 'changemedium': {
        if (args.length > 0 || cur.startsWith('force')) return ['force=true'];
        // Start from the directory of the disc in the drive now.
        const now = cdromOf(this.cfg, n)?.path;
        const from = cur === '' && now !== undefined ? posix.dirname(now) + '/' : cur;
        return [...this.completeImage(from), ...(cur === '' ? ['force=true'] : [])];
      }
      case 'eject':
        return ['force=true'];
      case 'saveconfig':
      case 'restoreconfig':
        return [];
      default:
        return [];
    }
  }

  /** Absolute paths of directories and .iso files on the daemon's side, for an image argument. */
  private completeImage(word: string): string[] {
    if (!word.startsWith('/')) return word === '' ? ['/'] : [];
    const slash = word.lastIndexOf('/');
    const dir = word.slice(0, slash + 1);
    const prefix = word.slice(slash + 1);
    return this.model
      .listDir(dir)
      .filter((e) => e.name.startsWith(prefix) && (prefix.startsWith('.') || !e.name.startsWith('.')) && (e.dir || /\.iso$/i.test(e.name)))
      .map((e) => `${dir}${e.name}${e.dir ? '/' : ''}`);
  }

  private completeCreate(n: Node, args: readonly string[], cur: string): string[] {
    switch (n.kind) {
      case 'luns':
      case 'usb-luns':
        if (args.length === 0) {
          if (cur.startsWith('/')) return this.cfg.backstores.map((b) => `/backstores/${b.type}/${b.name}`);
          return this.cfg.backstores.map((b) => b.name);
        }
        return ['readOnly=true'];
      case 'bs-type':
        if (args.length === 1 && n.type === 'file' && cur.startsWith('/')) return this.completeImage(cur);
        return args.length === 0 ? [] : ['readOnly=', 'blockSize=', 'writeCache=', 'thinProvisioning=', 'removable=', 'vendor=', 'product=', 'revision=', 'serial=', 'size=', ...(n.type === 'file' ? ['cdrom=true'] : [])];
      case 'acls': {
        // Initiators logged in now that have no ACL yet.
        const t = findTarget(this.cfg, (n as { iqn: string }).iqn, (n as { tpgt: number }).tpgt);
        const have = (t?.acls ?? []).map((a) => a.initiator.toLowerCase());
        const live = this.model.runtime?.sessions?.() ?? [];
        return args.length === 0 ? live.map((s) => s.initiator).filter((i) => !have.includes(i.toLowerCase())) : ['userid=', 'password=', 'mutual_userid=', 'mutual_password='];
      }
      case 'acl': {
        const t = findTarget(this.cfg, n.iqn, n.tpgt);
        return args.length === 1 ? (t?.luns ?? []).map((l) => String(l.lun)) : args.length >= 2 ? ['readOnly=true'] : [];
      }
      case 'portals':
        return args.length === 0 ? ['0.0.0.0', '127.0.0.1', '::'] : [];
      default:
        return [];
    }
  }

  // ------------------------------------------------------------------ helpers for commands

  async change(fn: (draft: LunboxConfig) => string): Promise<string> {
    const { summary: s, report } = await this.model.change(fn);
    return reportLines(s, report, this.model.runtime !== undefined);
  }

  /** targetcli-style tree: '| ' continues an ancestor that has siblings below. */
  renderTree(node: Node, path: readonly string[], depth: number): string {
    const lines: string[] = [];
    const render = (n: Node, label: string, bars: boolean[], d: number): void => {
      const indent = d === 0 ? '' : '  ' + bars.slice(0, -1).map((b) => (b ? '| ' : '  ')).join('');
      const left = `${indent}o- ${label} `;
      const right = ` [${summary(this.cfg, n)}]`;
      lines.push(left + '.'.repeat(Math.max(3, LS_WIDTH - left.length - right.length)) + right);
      if (d >= depth) return;
      const kids = children(this.cfg, n);
      kids.forEach((k, i) => render(k.node, k.name, [...bars, i < kids.length - 1], d + 1));
    };
    render(node, path.length === 0 ? '/' : path[path.length - 1]!, [], 0);
    return lines.join('\n');
  }

  nodeInfo(node: Node): unknown {
    const cfg = redactSecrets(this.cfg);
    switch (node.kind) {
      case 'root':
        return cfg;
      case 'backstores':
        return cfg.backstores;
      case 'bs-type':
        return cfg.backstores.filter((b) => b.type === node.type);
      case 'backstore':
        return { ...cfg.backstores.find((b) => b.name === node.name), usedBy: backstoreUsers(cfg, node.name) };
      case 'iscsi':
        return { ...cfg.iscsi, targets: targetIqns(cfg) };
      case 'target':
        return tpgsOf(cfg, node.iqn);
      case 'tpg':
      case 'luns':
      case 'acls':
      case 'portals': {
        const t = findTarget(cfg, node.iqn, node.tpgt);
        if (!t) return undefined;
        if (node.kind === 'luns') return t.luns;
        if (node.kind === 'acls') return t.acls ?? [];
        if (node.kind === 'portals') return effectivePortals(cfg, t);
        return t;
      }
      case 'lun':
        return findTarget(cfg, node.iqn, node.tpgt)?.luns.find((l) => l.lun === node.lun);
      case 'acl':
        return findTarget(cfg, node.iqn, node.tpgt)?.acls?.find((a) => sameIqn(a.initiator, node.initiator));
      case 'mapped':
        return findTarget(cfg, node.iqn, node.tpgt)?.acls?.find((a) => sameIqn(a.initiator, node.initiator))?.luns?.find((m) => m.lun === node.lun) ?? { lun: node.lun, targetLun: node.lun };
      case 'portal':
        return { address: node.address, port: node.port };
      case 'usb':
        return usbOf(cfg);
      case 'usb-gadget':
        return usbOf(cfg).gadget ?? {};
      case 'usb-luns':
        return usbOf(cfg).luns ?? [];
      case 'usb-lun':
        return usbOf(cfg).luns?.find((l) => l.lun === node.lun);
      case 'sbp2':
        return cfg.sbp2 ?? {};
    }
  }

  cd(path: string[]): void {
    this.cwd = path;
  }
}

function quoteIfNeeded(name: string): string {
  return quoteWord(name);
}

// ------------------------------------------------------------------ create / delete per node

function targetOf(d: LunboxConfig, n: { iqn: string; tpgt: number }): IscsiTargetConfig {
  const t = findTarget(d, n.iqn, n.tpgt);
  if (!t) throw new ShellError(`no target ${n.iqn} tpg ${n.tpgt}`);
  return t;
}

function applyAttrs(obj: Record<string, unknown>, g: Group | undefined, kv: ReadonlyMap<string, string>): void {
  for (const [key, text] of kv) {
    const spec = g ? findKey(g, key) : undefined;
    if (!spec || spec.readOnly) throw new ShellError(`unknown setting '${key}'${g ? `; valid: ${g.keys.filter((s) => !s.readOnly).map((s) => s.key).join(', ')}` : ''}`);
    const v = parseValue(spec, text);
    if (v === undefined) delete obj[spec.field];
    else obj[spec.field] = v;
  }
}

function createIn(shell: Shell, n: Node, args: readonly string[]): Promise<string> {
  const { positional, kv } = splitKeyValues(args);
  switch (n.kind) {
    case 'bs-type': {
      const name = kv.get('name') ?? positional[0];
      if (!name) throw new ShellError(`usage: create NAME ${n.type === 'ram' ? 'SIZE' : n.type === 'file' ? 'PATH [SIZE]' : 'DEVICE'} [key=value ...]`);
      kv.delete('name');
      const b: BackstoreConfig = { name, type: n.type };
      const rec = b as unknown as Record<string, unknown>;
      if (n.type === 'ram') {
        const size = kv.get('size') ?? positional[1];
        if (size === undefined) throw new ShellError('usage: create NAME SIZE (e.g. create ram0 64M)');
        rec['size'] = /^\d+$/.test(size) ? Number(size) : size;
      } else {
        const path = kv.get('path') ?? kv.get('file_or_dev') ?? kv.get('dev') ?? positional[1];
        // A CD-ROM drive may start empty (changemedium puts a disc in later).
        const emptyDrive = n.type === 'file' && /^(true|yes|on|1)$/i.test(kv.get('cdrom') ?? '');
        if (path === undefined && !emptyDrive) throw new ShellError(`usage: create NAME ${n.type === 'file' ? 'PATH [SIZE] (a CD-ROM: create NAME [ISO] cdrom=true)' : 'DEVICE'}`);
        if (path !== undefined) rec['path'] = path;
        const size = kv.get('size') ?? positional[2];
        if (size !== undefined && n.type === 'file') rec['size'] = /^\d+$/.test(size) ? Number(size) : size;
      }
      for (const k of ['path', 'file_or_dev', 'dev', 'size']) kv.delete(k);
      applyAttrs(rec, groupsOf({ kind: 'backstore', type: n.type, name }).find((g) => g.name === 'attribute'), kv);
      return shell.change((d) => {
        if (d.backstores.some((x) => x.name === name)) throw new ShellError(`a backstore named '${name}' exists already (names are unique across types)`);
        d.backstores.push(b);
        return `created ${n.type} backstore ${name}`;
      });
    }
    case 'iscsi': {
      const iqn = positional[0] ?? kv.get('wwn') ?? generatedIqn();
      return shell.change((d) => {
        if (targetIqns(d).some((i) => sameIqn(i, iqn))) throw new ShellError(`target ${iqn} exists already`);
        d.iscsi ??= { targets: [] };
        d.iscsi.targets.push({ iqn, luns: [] });
        const portals = d.iscsi.portals?.length ? '' : '\nnote: no portal yet: add one in tpg1/portals (create 0.0.0.0:3260)';
        return `created target ${iqn} with tpg1${portals}`;
      });
    }
    case 'target': {
      return shell.change((d) => {
        const tpgs = tpgsOf(d, n.iqn);
        const tag = positional[0] !== undefined ? Number(/^(?:tpg)?(\d+)$/.exec(positional[0])?.[1] ?? NaN) : nextFree(tpgs.map((t) => t.tpgt ?? 1), 1);
        if (!(tag >= 1 && tag <= 65535)) throw new ShellError(`tag '${positional[0]}': expected 1..65535`);
        if (tpgs.some((t) => (t.tpgt ?? 1) === tag)) throw new ShellError(`tpg${tag} exists already`);
        d.iscsi!.targets.push({ iqn: tpgs[0]?.iqn ?? n.iqn, tpgt: tag, luns: [] });
        return `created tpg${tag}`;
      });
    }
    case 'luns': {
      const ref = kv.get('storage_object') ?? positional[0];
      if (!ref) throw new ShellError('usage: create BACKSTORE [LUN] [readOnly=true]   (BACKSTORE: a name or /backstores/TYPE/NAME)');
      const name = ref.includes('/') ? ref.split('/').filter(Boolean).pop() ?? '' : ref;
      const lunText = kv.get('lun') ?? positional[1];
      const readOnly = kv.has('readOnly') ? parseValue({ key: 'readOnly', field: 'readOnly', type: 'bool', help: '' }, kv.get('readOnly') ?? '') : undefined;
      return shell.change((d) => {
        if (!d.backstores.some((b) => b.name === name)) throw new ShellError(`no backstore '${name}' (have: ${d.backstores.map((b) => b.name).join(', ') || 'none'})`);
        const t = targetOf(d, n);
        const lun = lunText !== undefined ? lunNumber(lunText) : nextFree(t.luns.map((l) => l.lun));
        if (t.luns.some((l) => l.lun === lun)) throw new ShellError(`LUN ${lun} exists already`);
        t.luns.push({ lun, backstore: name, ...(readOnly === true ? { readOnly: true } : {}) });
        // targetcli auto_add_mapped_luns: ACLs with an explicit list get the new LUN too.
        const mapped: string[] = [];
        for (const a of t.acls ?? []) {
          if (a.luns === undefined) continue;
          if (a.luns.some((m) => m.lun === lun)) continue;
          a.luns.push({ lun });
          mapped.push(a.initiator);
        }
        return `created lun${lun} -> ${name}${mapped.length ? `\nmapped lun${lun} for ${mapped.join(', ')}` : ''}`;
      });
    }
    case 'acls': {
      const initiator = positional[0] ?? kv.get('wwn');
      if (!initiator) throw new ShellError('usage: create INITIATOR_IQN [userid=NAME password=SECRET]');
      kv.delete('wwn');
      return shell.change((d) => {
        const t = targetOf(d, n);
        t.acls ??= [];
        if (t.acls.some((a) => sameIqn(a.initiator, initiator))) throw new ShellError(`an ACL for ${initiator} exists already`);
        const acl = { initiator } as { initiator: string; auth?: Record<string, unknown> };
        if (kv.size) {
          acl.auth = {};
          applyAttrs(acl.auth, groupsOf({ kind: 'acl', iqn: n.iqn, tpgt: n.tpgt, initiator }).find((g) => g.name === 'auth'), kv);
        }
        const firstAcl = t.acls.length === 0 && t.demoMode === undefined;
        t.acls.push(acl as never);
        return `created ACL ${initiator} (mapped LUNs: all)${firstAcl ? '\nnote: demo mode is now off: only initiators with an ACL may log in (set attribute demoMode=true on the tpg to allow all)' : ''}`;
      });
    }
    case 'acl': {
      const mlText = kv.get('mapped_lun') ?? positional[0];
      if (mlText === undefined) throw new ShellError('usage: create MAPPED_LUN [TPG_LUN] [readOnly=true]');
      const tlText = kv.get('tpg_lun') ?? positional[1];
      const ro = kv.get('readOnly') ?? kv.get('write_protect');
      return shell.change((d) => {
        const t = targetOf(d, n);
        const a = t.acls?.find((x) => sameIqn(x.initiator, n.initiator));
        if (!a) throw new ShellError(`no ACL ${n.initiator}`);
        const lun = lunNumber(mlText, 'mapped LUN');
        const targetLun = tlText !== undefined ? lunNumber(tlText, 'TPG LUN') : lun;
        a.luns ??= t.luns.map((l): MappedLun => ({ lun: l.lun }));
        if (a.luns.some((m) => m.lun === lun)) throw new ShellError(`mapped LUN ${lun} exists already`);
        const m: MappedLun = { lun, ...(targetLun !== lun ? { targetLun } : {}) };
        if (ro !== undefined && parseValue({ key: 'readOnly', field: 'readOnly', type: 'bool', help: '' }, ro) === true) m.readOnly = true;
        a.luns.push(m);
        return `created mapped_lun${lun} -> lun${targetLun}${m.readOnly ? ' (read-only)' : ''}`;
      });
    }
    case 'portals': {
      const text = positional[0] ?? kv.get('ip_address');
      if (!text) throw new ShellError('usage: create ADDRESS[:PORT]   (e.g. create 0.0.0.0:3260, create [::]:3260)');
      let p = parsePortalName(text);
      const portText = positional[1] ?? kv.get('ip_port') ?? kv.get('port');
      if (p && portText !== undefined) p = { address: p.address, port: Number(portText) };
      if (!p || !(p.port >= 0 && p.port <= 65535)) throw new ShellError(`portal '${text}': expected ADDRESS[:PORT]`);
      const portal = p;
      return shell.change((d) => {
        const t = targetOf(d, n);
        const list = effectivePortals(d, t).portals;
        if (list.some((x) => x.address === portal.address && x.port === portal.port)) throw new ShellError(`portal ${portalName(portal)} exists already`);
        t.portals = [...list, portal];
        return `created portal ${portalName(portal)}`;
      });
    }
    case 'usb-luns': {
      const usage = 'usage: create BACKSTORE [LUN] [readOnly=true], or create lun=N backstore=NAME   (a CD-ROM: a backstore created with cdrom=true)';
      const named = kv.get('backstore') ?? kv.get('storage_object');
      const pos = [...positional];
      const ref = named ?? pos.shift();
      const lunText = kv.get('lun') ?? pos.shift();
      if (!ref || pos.length > 0) throw new ShellError(usage);
      for (const k of ['backstore', 'storage_object', 'lun']) kv.delete(k);
      const name = ref.includes('/') ? ref.split('/').filter(Boolean).pop() ?? '' : ref;
      return shell.change((d) => {
        if (!d.backstores.some((b) => b.name === name)) throw new ShellError(`no backstore '${name}' (have: ${d.backstores.map((b) => b.name).join(', ') || 'none'})`);
        const u = (d.usb ??= { luns: [] }) as UsbSection;
        u.luns ??= [];
        const lun = lunText !== undefined ? lunNumber(lunText) : nextFree(u.luns.map((l) => l.lun));
        if (lun > 15) throw new ShellError(`USB LUN ${lun}: USB mass storage has LUNs 0..15 (BOT GET MAX LUN)`);
        const taken = u.luns.find((l) => l.lun === lun);
        if (taken) throw new ShellError(`USB LUN ${lun} exists already (it exports ${taken.backstore}; delete lun${lun} first, or give another LUN)`);
        const l = { lun, backstore: name };
        applyAttrs(l, groupsOf({ kind: 'usb-lun', lun }).find((g) => g.name === 'attribute'), kv);
        u.luns.push(l);
        return `created USB lun${lun} -> ${name}`;
      });
    }
    case 'sbp2':
      throw new ShellError('not yet: the SBP-2 (FireWire) target is not built');
    default:
      throw new ShellError('nothing can be created here');
  }
}

function deleteIn(shell: Shell, n: Node, args: readonly string[]): Promise<string> {
  const what = args[0];
  if (what === undefined) throw new ShellError('usage: delete NAME (see ls for the names here)');
  const target = child(shell.cfg, n, what);
  if (!target) throw new ShellError(`nothing called '${what}' here`);
  return shell.change((d) => {
    switch (target.kind) {
      case 'backstore': {
        const users = backstoreUsers(d, target.name);
        if (users.length) throw new ShellError(`backstore ${target.name} is in use by ${users.join(', ')}: delete those LUNs first`);
        d.backstores = d.backstores.filter((b) => b.name !== target.name);
        return `deleted backstore ${target.name}`;
      }
      case 'target': {
        const n0 = d.iscsi!.targets.length;
        d.iscsi!.targets = d.iscsi!.targets.filter((t) => !sameIqn(t.iqn, target.iqn));
        return `deleted target ${target.iqn} (${n0 - d.iscsi!.targets.length} TPG(s); its sessions are closed)`;
      }
      case 'tpg':
        d.iscsi!.targets = d.iscsi!.targets.filter((t) => !(sameIqn(t.iqn, target.iqn) && (t.tpgt ?? 1) === target.tpgt));
        return `deleted tpg${target.tpgt}`;
      case 'lun': {
        const t = targetOf(d, target);
        t.luns = t.luns.filter((l) => l.lun !== target.lun);
        // Mapped LUNs that pointed at it go too (as targetcli does).
        for (const a of t.acls ?? []) if (a.luns) a.luns = a.luns.filter((m) => (m.targetLun ?? m.lun) !== target.lun);
        return `deleted lun${target.lun}`;
      }
      case 'acl': {
        const t = targetOf(d, target);
        t.acls = (t.acls ?? []).filter((a) => !sameIqn(a.initiator, target.initiator));
        if (t.acls.length === 0) delete t.acls;
        return `deleted ACL ${target.initiator}`;
      }
      case 'mapped': {
        const t = targetOf(d, target);
        const a = t.acls?.find((x) => sameIqn(x.initiator, target.initiator));
        if (!a) throw new ShellError('gone');
        a.luns = (a.luns ?? t.luns.map((l): MappedLun => ({ lun: l.lun }))).filter((m) => m.lun !== target.lun);
        return `deleted mapped_lun${target.lun}`;
      }
      case 'portal': {
        const t = targetOf(d, target);
        const list = effectivePortals(d, t).portals;
        const kept = list.filter((p) => !(p.address === target.address && p.port === target.port));
        // Not there (the saved view without a --listen override): leave an inherited list alone.
        if (kept.length !== list.length) t.portals = kept;
        return `deleted portal ${portalName(target)}\nnote: new connections to it are refused now; sessions logged in through it stay until they log out`;
      }
      case 'usb-lun': {
        const u = usbOf(d);
        u.luns = (u.luns ?? []).filter((l) => l.lun !== target.lun);
        return `deleted USB lun${target.lun}`;
      }
      default:
        throw new ShellError(`'${what}' cannot be deleted`);
    }
  });
}

// ------------------------------------------------------------------ CD-ROM medium

/** The CD-ROM backstore of a node: itself, or the one a LUN exports. */
function cdromOf(cfg: LunboxConfig, n: Node): BackstoreConfig | undefined {
  let name: string | undefined;
  if (n.kind === 'backstore') name = n.name;
  else if (n.kind === 'lun') name = findTarget(cfg, n.iqn, n.tpgt)?.luns.find((l) => l.lun === n.lun)?.backstore;
  else if (n.kind === 'usb-lun') name = usbOf(cfg).luns?.find((l) => l.lun === n.lun)?.backstore;
  const b = name === undefined ? undefined : cfg.backstores.find((x) => x.name === name);
  return b?.cdrom === true ? b : undefined;
}

function cdromsHint(cfg: LunboxConfig): string {
  const list = cfg.backstores.filter((b) => b.cdrom === true).map((b) => `/backstores/${b.type}/${b.name}`);
  return list.length
    ? `it works on a CD-ROM backstore or a LUN that exports one (CD-ROMs: ${list.join(', ')})`
    : 'there is no CD-ROM here (create one: /backstores/file create NAME ISO cdrom=true)';
}

async function changeMediumAt(shell: Shell, n: Node, args: readonly string[], ejectOnly: boolean): Promise<string> {
  const usage = ejectOnly ? 'usage: eject [force=true]' : 'usage: changemedium [ISO] [force=true]   (no ISO: eject)';
  const { positional, kv } = splitKeyValues(args);
  const forceText = kv.get('force');
  kv.delete('force');
  if (kv.size > 0 || positional.length > (ejectOnly ? 0 : 1)) throw new ShellError(usage);
  const force = forceText !== undefined && parseValue({ key: 'force', field: 'force', type: 'bool', help: '' }, forceText) === true;
  const b = cdromOf(shell.cfg, n);
  if (!b) throw new ShellError(cdromsHint(shell.cfg));
  const iso = positional[0] ?? null;
  if (iso !== null && !posix.isAbsolute(iso)) {
    throw new ShellError(`ISO '${iso}': give an absolute path (the daemon opens it, from its own directory, not yours)`);
  }
  const hadDisc = b.path !== undefined;
  let r: { forced: boolean; live: boolean };
  try {
    r = await shell.model.changeMedium(b.name, iso, { force });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'EPREVENTED') {
      throw new ShellError(
        `${b.name}: the host has locked the tray (PREVENT ALLOW MEDIUM REMOVAL; it has the disc mounted or in use) and was sent an eject request. ` +
          `Unmount or eject it on the host and try again, or add force=true to change the disc anyway`,
      );
    }
    throw err;
  }
  const out = [
    iso !== null
      ? `medium ${iso} inserted in ${b.name}: initiators get UNIT ATTENTION 06/28/00 (NOT READY TO READY CHANGE), then read the new disc`
      : hadDisc
        ? `medium ejected from ${b.name}: the tray is open; initiators get NOT READY 02/3A/02 (MEDIUM NOT PRESENT - TRAY OPEN)`
        : `${b.name} had no disc; the tray is open`,
  ];
  if (r.forced) out.push('note: the host had locked the tray (PREVENT ALLOW MEDIUM REMOVAL): changed anyway (force=true)');
  if (!r.live) out.push('note: no daemon attached: the change is in this config only (saveconfig to keep it)');
  return out.join('\n');
}

// ------------------------------------------------------------------ the command table

const GLOBAL_HELP = `Commands (help COMMAND for details):
  ls [PATH] [DEPTH]         the tree below PATH
  cd [PATH]                 go to PATH (.. up, / top); a bare PATH also goes there
  pwd                       where you are
  info [PATH]               the settings of a node (secrets hidden)
  create ARGS               add something here (what depends on the node)
  delete NAME               remove a child of this node
  set GROUP key=value ...   change settings (key= unsets)
  get [GROUP] [key ...]     show settings
  sessions                  iSCSI initiators logged in
  saveconfig [FILE]         write the config (atomic; keeps FILE.bak; not serve --listen)
  restoreconfig [FILE]      load the config file again and apply it
  changemedium [ISO]        put another disc in a CD-ROM (no ISO: eject); eject
  version, help, exit
PATH COMMAND runs COMMAND at PATH. Tab completes paths, commands and arguments.
Changes apply to the running daemon at once; saveconfig keeps them across restarts.
Under /usb (and for a backstore the gadget exports) a change rebuilds the USB gadget: the
host sees the device disconnect and reconnect. A CD-ROM disc change is no reconnect.`;

const COMMANDS: Readonly<Record<string, CommandDef>> = {
  ls: {
    usage: 'ls [PATH] [DEPTH]',
    help: 'Show the tree below PATH (default: here), DEPTH levels deep (default: all).',
    run(c) {
      const [a, b] = c.args;
      let path: string | undefined = a;
      let depth = Infinity;
      if (a !== undefined && /^\d+$/.test(a) && b === undefined) {
        path = undefined;
        depth = Number(a);
      } else if (b !== undefined) depth = Number(b);
      const at = path === undefined ? c : { ...this.at(path) };
      return this.renderTree(at.node, at.path, depth);
    },
  },
  cd: {
    usage: 'cd [PATH]',
    help: 'Go to PATH: absolute (/iscsi), relative (luns), .. for up; no PATH: the top.',
    run(c) {
      const at = c.args[0] === undefined ? { path: [] } : this.at(c.args[0]);
      this.cd(at.path);
      return '';
    },
  },
  pwd: { usage: 'pwd', help: 'Print the current path.', run() { return this.pwd; } },
  info: {
    usage: 'info [PATH]',
    help: 'Show the configuration of a node as JSON; CHAP secrets are shown as ********.',
    run(c) {
      const at = c.args[0] === undefined ? c : this.at(c.args[0]);
      return JSON.stringify(this.nodeInfo(at.node), null, 2) ?? 'null';
    },
  },
  create: {
    usage: 'create ARGS',
    help: [
      'Add a child of this node:',
      '  /backstores/ram     create NAME SIZE                 e.g. create r0 64M',
      '  /backstores/file    create NAME PATH [SIZE]          e.g. create disk /srv/disk.img 1G',
      '  /backstores/block   create NAME DEVICE               e.g. create sd /dev/sda',
      '                      (any: key=value attributes, e.g. readOnly=true blockSize=4096)',
      '  /iscsi              create [IQN]                     a target with tpg1',
      '  /iscsi/IQN          create [TAG]                     another TPG',
      '  .../luns            create BACKSTORE [LUN] [readOnly=true]',
      '  .../acls            create INITIATOR_IQN [userid=... password=...]',
      '  .../acls/INITIATOR  create MAPPED_LUN [TPG_LUN] [readOnly=true]',
      '  .../portals         create ADDRESS[:PORT]',
      '  /backstores/file    create NAME [ISO] cdrom=true     a CD-ROM drive (empty without ISO)',
      '  /usb/luns           create BACKSTORE [LUN] [readOnly=true]   or: create lun=N backstore=NAME',
      '                      (USB: the gadget is rebuilt; the host sees the device disconnect and reconnect)',
    ].join('\n'),
    where: isContainer,
    run(c) {
      return createIn(this, c.node, c.args);
    },
  },
  delete: {
    usage: 'delete NAME',
    help: 'Remove a child of this node (a backstore must be unused; a target closes its sessions).',
    where: isContainer,
    run(c) {
      return deleteIn(this, c.node, c.args);
    },
  },
  set: {
    usage: 'set GROUP key=value ...',
    help: 'Change settings of this node; key= (empty) returns a key to its default. Groups: attribute, parameter, auth, discovery_auth (where they apply).',
    where: (n) => groupsOf(n).length > 0,
    run(c) {
      const groups = groupsOf(c.node);
      const [gname, ...pairs] = c.args;
      const g = groups.find((x) => x.name === gname);
      if (!g) throw new ShellError(`usage: set GROUP key=value ...; groups here: ${groups.map((x) => x.name).join(', ')}`);
      const { positional, kv } = splitKeyValues(pairs);
      if (positional.length || kv.size === 0) throw new ShellError(`usage: set ${g.name} key=value ...; keys: ${g.keys.filter((s) => !s.readOnly).map((s) => s.key).join(', ')}`);
      const specs = [...kv].map(([key, text]) => {
        const spec = findKey(g, key);
        if (!spec) throw new ShellError(`unknown key '${key}' in ${g.name}; valid: ${g.keys.map((s) => s.key).join(', ')}`);
        if (spec.readOnly) throw new ShellError(`${spec.key} cannot be changed here`);
        return { spec, value: parseValue(spec, text) };
      });
      return this.change((d) => {
        const o = g.write(d);
        for (const { spec, value } of specs) {
          if (value === undefined) delete o[spec.field];
          else o[spec.field] = value;
        }
        g.finish?.(d);
        return specs.map(({ spec, value }) => `${g.name} ${spec.key}=${showValue(spec, value)}`).join('\n');
      });
    },
  },
  get: {
    usage: 'get [GROUP] [key ...]',
    help: 'Show settings of this node: every group, one group, or some keys. Secrets show as ********.',
    where: (n) => groupsOf(n).length > 0,
    run(c) {
      const groups = groupsOf(c.node);
      const [gname, ...keys] = c.args;
      const chosen = gname === undefined ? groups : groups.filter((x) => x.name === gname);
      if (chosen.length === 0) throw new ShellError(`no group '${gname}' here; groups: ${groups.map((x) => x.name).join(', ')}`);
      const out: string[] = [];
      for (const g of chosen) {
        const o = g.read(this.cfg) ?? {};
        const specs = keys.length ? keys.map((k) => findKey(g, k) ?? (() => { throw new ShellError(`unknown key '${k}' in ${g.name}`); })()) : g.keys;
        if (chosen.length > 1) out.push(`${g.name.toUpperCase()} CONFIG GROUP`, '='.repeat(g.name.length + 13));
        for (const s of specs) out.push(`${s.key}=${showValue(s, o[s.field])}${keys.length ? '' : `   # ${s.help}`}`);
        if (chosen.length > 1) out.push('');
      }
      return out.join('\n').trimEnd();
    },
  },
  sessions: {
    usage: 'sessions',
    help: 'iSCSI sessions logged in now.',
    run() {
      const list = this.model.runtime?.sessions?.() ?? [];
      if (list.length === 0) return 'no sessions';
      return list.map((s) => `${s.initiator} -> ${s.target} (${s.connections} connection${s.connections === 1 ? '' : 's'})`).join('\n');
    },
  },
  saveconfig: {
    usage: 'saveconfig [FILE]',
    help:
      "Write the configuration to FILE (default: the daemon's config file) atomically; the previous file is kept as FILE.bak. " +
      "It is the config file's own content plus the changes made here: command-line overrides (serve --listen) are not written.",
    async run(c) {
      const file = await this.model.save(c.args[0]);
      return `configuration saved to ${file}`;
    },
  },
  restoreconfig: {
    usage: 'restoreconfig [FILE]',
    help: 'Load FILE (default: the config file) and apply it in place of the running configuration.',
    async run(c) {
      const { file, report } = await this.model.restore(c.args[0]);
      return [`configuration restored from ${file}`, ...report.changes.map((x) => `  ${x}`), ...report.notes.map((n) => `note: ${n}`)].join('\n');
    },
  },
  changemedium: {
    usage: 'changemedium [ISO] [force=true]',
    help: [
      'Put disc image ISO (an absolute path on the board) in a CD-ROM drive; without ISO, eject the disc.',
      'Works at a CD-ROM backstore (cdrom=true) or at a LUN that exports one (iSCSI or USB), on the running',
      'daemon at once: initiators get UNIT ATTENTION 06/28/00 (NOT READY TO READY CHANGE) and read the new',
      'disc; after an eject they get NOT READY 02/3A/02 (tray open). While a host has locked the tray (PREVENT',
      'ALLOW MEDIUM REMOVAL, e.g. it has the disc mounted) the change is refused and the host is sent an',
      'eject request; force=true changes it anyway. The config keeps the new path (saveconfig to keep it).',
    ].join('\n'),
    where: (n, cfg) => cdromOf(cfg, n) !== undefined,
    whyNot: cdromsHint,
    run(c) {
      return changeMediumAt(this, c.node, c.args, false);
    },
  },
  eject: {
    usage: 'eject [force=true]',
    help: 'Take the disc out of a CD-ROM drive (the same as changemedium with no ISO); see help changemedium.',
    where: (n, cfg) => cdromOf(cfg, n) !== undefined,
    whyNot: cdromsHint,
    run(c) {
      return changeMediumAt(this, c.node, c.args, true);
    },
  },
  version: { usage: 'version', help: 'The lunbox version.', run() { return `lunbox ${VERSION}`; } },
  help: {
    usage: 'help [COMMAND]',
    help: 'Help on this node and its commands, or on one command.',
    run(c) {
      const name = c.args[0];
      if (name !== undefined) {
        const def = this.commands[name];
        if (!def) throw new ShellError(`no command '${name}'`);
        return `usage: ${def.usage}\n${def.help}`;
      }
      return `${this.pwd}: ${NODE_HELP[c.node.kind]}\nCommands here: ${this.commandsFor(c.node).join(', ')}\n\n${GLOBAL_HELP}`;
    },
  },
  exit: {
    usage: 'exit',
    help: 'Leave the shell (the daemon keeps running).',
    run() {
      return this.model.dirty ? 'note: there are unsaved changes (they stay live until the daemon restarts; saveconfig keeps them)' : '';
    },
  },
  quit: { usage: 'quit', help: 'Same as exit.', run() { return ''; } },
};

export type { BackstoreType };
