// An in-memory IpTool: interfaces, their carrier, addresses and neighbour entries, and the
// `ip` command lines the real one would have run.
import type { IpTool } from '../../../src/net/ip-tool';

export interface FakeIf {
  up: boolean;
  rxPackets: number;
  carrier: boolean;
  addresses: Set<string>;
  neighbours: Map<string, string>;
}

export class FakeIpTool implements IpTool {
  readonly ifs = new Map<string, FakeIf>();
  readonly commands: string[] = [];
  /** Make the next command fail with this message. */
  failNext: string | undefined;

  add(name: string): FakeIf {
    const i: FakeIf = { up: false, rxPackets: 0, carrier: false, addresses: new Set(), neighbours: new Map() };
    this.ifs.set(name, i);
    return i;
  }

  private get(name: string): FakeIf {
    const i = this.ifs.get(name);
    if (!i) throw new Error(`Cannot find device "${name}"`);
    return i;
  }

  private run(cmd: string): void {
    this.commands.push(cmd);
    const f = this.failNext;
    this.failNext = undefined;
    if (f !== undefined) throw new Error(f);
  }

  async exists(name: string): Promise<boolean> {
    return this.ifs.has(name);
  }

  async carrier(name: string): Promise<boolean | undefined> {
    const i = this.ifs.get(name);
    return i && i.up ? i.carrier : undefined;
  }

  async up(name: string): Promise<void> {
    this.run(`ip link set dev ${name} up`);
    this.get(name).up = true;
  }

  async down(name: string): Promise<void> {
    this.run(`ip link set dev ${name} down`);
    const i = this.get(name);
    i.up = false;
    i.neighbours.clear(); // the kernel flushes neighbour entries on down
  }

  async rxPackets(name: string): Promise<number | undefined> {
    return this.ifs.get(name)?.rxPackets;
  }

  async addAddress(name: string, cidr: string): Promise<void> {
    this.run(`ip addr replace ${cidr} broadcast + dev ${name}`);
    this.get(name).addresses.add(cidr);
  }

  async setNeighbour(name: string, ip: string, mac: string): Promise<void> {
    this.run(`ip neigh replace ${ip} lladdr ${mac} dev ${name} nud permanent`);
    this.get(name).neighbours.set(ip, mac);
  }
}
