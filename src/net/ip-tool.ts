// The board's network interfaces, behind a small interface: the real one runs iproute2's `ip`
// (on every board image) and reads /sys/class/net; tests inject a fake.

import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export interface IpTool {
  /** /sys/class/net/<ifname> exists. */
  exists(ifname: string): Promise<boolean>;
  /** The link's carrier: true/false, undefined when the kernel cannot tell (interface down or gone). */
  carrier(ifname: string): Promise<boolean | undefined>;
  /** `ip link set dev IF up`. */
  up(ifname: string): Promise<void>;
  /** `ip link set dev IF down`. */
  down(ifname: string): Promise<void>;
  /** Packets received on the interface (statistics/rx_packets), undefined when unreadable. */
  rxPackets(ifname: string): Promise<number | undefined>;
  /** `ip addr replace ADDR/PREFIX broadcast + dev IF` (idempotent). */
  addAddress(ifname: string, cidr: string): Promise<void>;
  /** `ip neigh replace IP lladdr MAC dev IF nud permanent` (idempotent). */
  setNeighbour(ifname: string, ip: string, mac: string): Promise<void>;
}

export class IpToolError extends Error {
  readonly code: 'NO_IP' | 'IP_FAILED';
  constructor(code: IpToolError['code'], message: string) {
    super(message);
    this.name = 'IpToolError';
    this.code = code;
  }
}

export function nodeIpTool(opts: { ipCommand?: string; sysClassNet?: string } = {}): IpTool {
  const cmd = opts.ipCommand ?? 'ip';
  const net = opts.sysClassNet ?? '/sys/class/net';
  const ip = (args: string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      execFile(cmd, args, { timeout: 10_000 }, (e, _out, err) => {
        if (!e) return resolve();
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(new IpToolError('NO_IP', `the '${cmd}' command (iproute2) is missing: install it (apt-get install iproute2)`));
        }
        reject(new IpToolError('IP_FAILED', `${cmd} ${args.join(' ')}: ${String(err).trim() || e.message}`));
      });
    });
  return {
    exists: (ifname) => fsp.access(path.join(net, ifname)).then(() => true, () => false),
    async carrier(ifname) {
      // Reading `carrier` of an interface that is down fails with EINVAL.
      const v = await fsp.readFile(path.join(net, ifname, 'carrier'), 'utf8').catch(() => undefined);
      return v === undefined ? undefined : v.trim() === '1';
    },
    up: (ifname) => ip(['link', 'set', 'dev', ifname, 'up']),
    down: (ifname) => ip(['link', 'set', 'dev', ifname, 'down']),
    async rxPackets(ifname) {
      const v = await fsp.readFile(path.join(net, ifname, 'statistics', 'rx_packets'), 'utf8').catch(() => undefined);
      const n = v === undefined ? NaN : Number(v.trim());
      return Number.isSafeInteger(n) ? n : undefined;
    },
    addAddress: (ifname, cidr) => ip(['addr', 'replace', cidr, 'broadcast', '+', 'dev', ifname]),
    setNeighbour: (ifname, addr, mac) => ip(['neigh', 'replace', addr, 'lladdr', mac, 'dev', ifname, 'nud', 'permanent']),
  };
}
