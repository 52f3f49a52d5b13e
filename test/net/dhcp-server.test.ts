import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as dgram from 'node:dgram';
import { BROADCAST_FLAG, DhcpOption, DhcpType, addressOption, decodeDhcp, encodeDhcp, messageType } from '../../src/net/dhcp';
import type { DhcpMessage } from '../../src/net/dhcp';
import { DhcpServer, answerDhcp } from '../../src/net/dhcp-server';
import type { DhcpAnswer, DhcpLease } from '../../src/net/dhcp-server';

const LEASE: DhcpLease = { serverAddress: '10.55.0.1', clientAddress: '10.55.0.2', clientMac: '06:aa:bb:cc:dd:ee', netmask: '255.255.255.252', leaseSeconds: 3600 };
const MAC = Buffer.from('06aabbccddee', 'hex');

function request(type: number | undefined, o: Partial<DhcpMessage> & { opts?: [number, Buffer][]; mac?: Buffer } = {}): DhcpMessage {
  const options = new Map<number, Buffer>(type === undefined ? [] : [[DhcpOption.MESSAGE_TYPE, Buffer.from([type])]]);
  for (const [k, v] of o.opts ?? []) options.set(k, v);
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x1234abcd,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.concat([o.mac ?? MAC, Buffer.alloc(10)]),
    sname: '',
    file: '',
    ...o,
    options,
  };
}
const ip = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

function reply(a: DhcpAnswer): Extract<DhcpAnswer, { kind: 'reply' }> {
  if (a.kind !== 'reply') throw new Error(`expected a reply, got ignore: ${a.why}`);
  return a;
}

test('DISCOVER → OFFER of the one address: mask, lease, T1/T2, server id; no router, no DNS', () => {
  const a = reply(answerDhcp(request(DhcpType.DISCOVER, { opts: [[DhcpOption.PARAMETER_LIST, Buffer.from([1, 3, 6, 15])]] }), LEASE));
  assert.is(a.type, 'OFFER');
  const m = a.message;
  assert.is(m.op, 2);
  assert.is(m.xid, 0x1234abcd);
  assert.is(m.yiaddr, '10.55.0.2');
  assert.is(messageType(m), DhcpType.OFFER);
  assert.is(addressOption(m, DhcpOption.SERVER_ID), '10.55.0.1');
  assert.is(addressOption(m, DhcpOption.SUBNET_MASK), '255.255.255.252');
  assert.is(m.options.get(DhcpOption.LEASE_TIME)?.readUInt32BE(0), 3600);
  assert.is(m.options.get(DhcpOption.RENEWAL_TIME)?.readUInt32BE(0), 1800);
  assert.is(m.options.get(DhcpOption.REBINDING_TIME)?.readUInt32BE(0), 3150);
  // Asked for router and DNS (55 lists 3 and 6): never given, so the default route stays.
  assert.is(m.options.has(DhcpOption.ROUTER), false);
  assert.is(m.options.has(DhcpOption.DNS), false);
  // No broadcast flag, no ciaddr: unicast to the new address (RFC 2131 §4.1).
  assert.is(a.to, 'client');
});

test('reply destinations follow RFC 2131 §4.1 and are only ever broadcast or the leased address', () => {
  assert.is(reply(answerDhcp(request(DhcpType.DISCOVER, { flags: BROADCAST_FLAG }), LEASE)).to, 'broadcast');
  const renew = reply(answerDhcp(request(DhcpType.REQUEST, { ciaddr: '10.55.0.2' }), LEASE));
  assert.is(renew.type, 'ACK');
  assert.is(renew.to, 'client');
  assert.is(renew.message.ciaddr, '10.55.0.2');
  // A NAK is always broadcast, whatever the client's ciaddr.
  const nak = reply(answerDhcp(request(DhcpType.REQUEST, { ciaddr: '192.168.1.50' }), LEASE));
  assert.is(nak.type, 'NAK');
  assert.is(nak.to, 'broadcast');
  // A DISCOVER with a stray ciaddr elsewhere is never unicast there.
  const odd = reply(answerDhcp(request(DhcpType.DISCOVER, { ciaddr: '192.168.1.50' }), LEASE));
  assert.is(odd.to, 'broadcast');
});

test('REQUEST: SELECTING, INIT-REBOOT, RENEWING → ACK for the lease, NAK for any other address', () => {
  const sel = (addr: string, server = '10.55.0.1'): DhcpAnswer =>
    answerDhcp(request(DhcpType.REQUEST, { opts: [[DhcpOption.SERVER_ID, ip(server)], [DhcpOption.REQUESTED_IP, ip(addr)]] }), LEASE);
  const ack = reply(sel('10.55.0.2'));
  assert.is(ack.type, 'ACK');
  assert.is(ack.message.yiaddr, '10.55.0.2');
  assert.is(ack.message.options.get(DhcpOption.LEASE_TIME)?.readUInt32BE(0), 3600);
  const nak = reply(sel('10.55.0.3'));
  assert.is(nak.type, 'NAK');
  assert.is(nak.message.yiaddr, '0.0.0.0');
  assert.is(nak.message.options.has(DhcpOption.LEASE_TIME), false);
  assert.match(nak.message.options.get(DhcpOption.MESSAGE)?.toString() ?? '', 'offered 10.55.0.2');
  // The client chose another server's offer: not ours to answer.
  assert.is(sel('10.55.0.2', '192.168.1.1').kind, 'ignore');
  // INIT-REBOOT: an address remembered from another network is refused.
  const reboot = (addr: string): DhcpAnswer => answerDhcp(request(DhcpType.REQUEST, { opts: [[DhcpOption.REQUESTED_IP, ip(addr)]] }), LEASE);
  assert.is(reply(reboot('10.55.0.2')).type, 'ACK');
  assert.is(reply(reboot('192.168.178.23')).type, 'NAK');
  assert.is(answerDhcp(request(DhcpType.REQUEST), LEASE).kind, 'ignore');
});

test('only the gadget host_addr is answered: other MACs, non-Ethernet, relayed and BOOTP requests are ignored', () => {
  const other = answerDhcp(request(DhcpType.DISCOVER, { mac: Buffer.from('b827eb000001', 'hex') }), LEASE);
  assert.is(other.kind, 'ignore');
  assert.match(other.why, "not the computer's end of the USB link");
  assert.is(answerDhcp(request(DhcpType.DISCOVER, { htype: 6 }), LEASE).kind, 'ignore');
  assert.is(answerDhcp(request(DhcpType.DISCOVER, { hlen: 8 }), LEASE).kind, 'ignore');
  assert.is(answerDhcp(request(DhcpType.DISCOVER, { giaddr: '192.168.1.1' }), LEASE).kind, 'ignore');
  assert.is(answerDhcp(request(undefined), LEASE).kind, 'ignore');
  assert.is(answerDhcp({ ...request(DhcpType.DISCOVER), op: 2 }, LEASE).kind, 'ignore');
  // Upper-case MAC in the lease still matches.
  assert.is(answerDhcp(request(DhcpType.DISCOVER), { ...LEASE, clientMac: '06:AA:BB:CC:DD:EE' }).kind, 'reply');
});

test('INFORM gets mask without a lease; DECLINE is flagged; RELEASE and server messages are ignored; client id echoed', () => {
  const inf = reply(answerDhcp(request(DhcpType.INFORM, { ciaddr: '10.55.0.2' }), LEASE));
  assert.is(inf.type, 'ACK');
  assert.is(inf.message.yiaddr, '0.0.0.0');
  assert.is(inf.message.options.has(DhcpOption.LEASE_TIME), false);
  assert.is(addressOption(inf.message, DhcpOption.SUBNET_MASK), '255.255.255.252');
  assert.is(answerDhcp(request(DhcpType.INFORM, { ciaddr: '10.0.0.9' }), LEASE).kind, 'ignore');
  const dec = answerDhcp(request(DhcpType.DECLINE, { opts: [[DhcpOption.REQUESTED_IP, ip('10.55.0.2')]] }), LEASE);
  assert.equal([dec.kind, dec.kind === 'ignore' && dec.decline], ['ignore', true]);
  assert.is(answerDhcp(request(DhcpType.RELEASE, { ciaddr: '10.55.0.2' }), LEASE).kind, 'ignore');
  assert.is(answerDhcp(request(DhcpType.OFFER), LEASE).kind, 'ignore');
  const cid = Buffer.from('0106aabbccddee', 'hex');
  assert.ok(reply(answerDhcp(request(DhcpType.DISCOVER, { opts: [[DhcpOption.CLIENT_ID, cid]] }), LEASE)).message.options.get(DhcpOption.CLIENT_ID)?.equals(cid));
});

// --- the server on loopback: 127.0.0.1 plays the board, 127.0.0.2 the leased address and
// 127.0.0.3 the broadcast address, each with its own client socket, so a test sees where a
// reply was sent.

interface Rig {
  server: DhcpServer;
  unicast: dgram.Socket;
  broadcast: dgram.Socket;
  got: { to: 'client' | 'broadcast'; msg: DhcpMessage }[];
  neighbour: number;
  logs: string[];
  send: (b: Buffer) => Promise<void>;
  close: () => Promise<void>;
}

async function rig(): Promise<Rig> {
  const got: Rig['got'] = [];
  const logs: string[] = [];
  const r = { neighbour: 0 };
  const listen = async (address: string, to: 'client' | 'broadcast', port = 0): Promise<dgram.Socket> => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    s.on('message', (b) => got.push({ to, msg: decodeDhcp(b) }));
    await new Promise<void>((res) => s.bind(port, address, () => res()));
    return s;
  };
  const unicast = await listen('127.0.0.2', 'client');
  const clientPort = unicast.address().port;
  const broadcast = await listen('127.0.0.3', 'broadcast', clientPort);
  const server = new DhcpServer({
    lease: { ...LEASE, serverAddress: '127.0.0.1', clientAddress: '127.0.0.2' },
    anyAddress: '127.0.0.1',
    serverPort: 0,
    clientPort,
    broadcastAddress: '127.0.0.3',
    beforeUnicast: async () => void r.neighbour++,
    log: (l, m) => logs.push(`${l}: ${m}`),
  });
  await server.start();
  const sender = dgram.createSocket('udp4');
  return {
    server,
    unicast,
    broadcast,
    got,
    get neighbour() {
      return r.neighbour;
    },
    logs,
    send: (b) => new Promise((res, rej) => sender.send(b, server.port, '127.0.0.1', (e) => (e ? rej(e) : res()))),
    close: async () => {
      await server.stop();
      for (const s of [unicast, broadcast, sender]) s.close();
    },
  };
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('server: DISCOVER/REQUEST exchange over UDP; unicast installs the neighbour entry first; broadcast flag honoured', async () => {
  const r = await rig();
  try {
    await r.send(encodeDhcp(request(DhcpType.DISCOVER)));
    await until(() => r.got.length === 1);
    assert.is(r.got[0]?.to, 'client');
    assert.is(messageType(r.got[0]!.msg), DhcpType.OFFER);
    assert.is(r.neighbour, 1);
    await r.send(encodeDhcp(request(DhcpType.REQUEST, { flags: BROADCAST_FLAG, opts: [[DhcpOption.SERVER_ID, ip('127.0.0.1')], [DhcpOption.REQUESTED_IP, ip('127.0.0.2')]] })));
    await until(() => r.got.length === 2);
    assert.is(r.got[1]?.to, 'broadcast');
    assert.is(messageType(r.got[1]!.msg), DhcpType.ACK);
    assert.is(r.neighbour, 1, 'no neighbour entry needed for a broadcast');
    assert.is(r.server.counters.offers, 1);
    assert.is(r.server.counters.acks, 1);
    assert.ok(r.logs.some((l) => /^info: dhcp: REQUEST → ACK/.test(l)), r.logs.join('\n'));
  } finally {
    await r.close();
  }
});

test('server: garbage, replies and foreign MACs get nothing back and do not stop it', async () => {
  const r = await rig();
  try {
    await r.send(Buffer.from('not dhcp at all'));
    await r.send(encodeDhcp({ ...request(DhcpType.DISCOVER), op: 2 }));
    await r.send(encodeDhcp(request(DhcpType.DISCOVER, { mac: Buffer.from('b827eb000001', 'hex') })));
    await until(() => r.server.counters.received === 3);
    await r.send(encodeDhcp(request(DhcpType.DISCOVER)));
    await until(() => r.got.length === 1);
    await new Promise((res) => setTimeout(res, 50));
    assert.is(r.got.length, 1, 'only the last request was answered');
    assert.is(r.server.counters.malformed, 1);
    assert.is(r.server.counters.ignored, 1);
  } finally {
    await r.close();
  }
});

test('server: a port in use is a clear error; stop is idempotent', async () => {
  const holder = dgram.createSocket('udp4'); // no SO_REUSEADDR: like another DHCP server
  await new Promise<void>((res) => holder.bind(0, '127.0.0.1', () => res()));
  const s = new DhcpServer({ lease: { ...LEASE, serverAddress: '127.0.0.1' }, serverPort: holder.address().port });
  try {
    await s.start();
    assert.unreachable('started on a port in use');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'PORT_IN_USE');
    assert.match((e as Error).message, /another DHCP server/);
  } finally {
    holder.close();
  }
  await s.stop();
  await s.stop();
});

test.run();
