import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BROADCAST_FLAG,
  DhcpError,
  DhcpOffset,
  DhcpOption,
  DhcpType,
  addressOption,
  clientHardwareAddress,
  decodeDhcp,
  encodeDhcp,
  messageType,
} from '../../src/net/dhcp';
import type { DhcpMessage } from '../../src/net/dhcp';
import { randomBytes, rng } from '../fabrics/iscsi/rng';

/** Hex with spaces, newlines and `#` comments ignored. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex');
const zeros = (n: number): string => '00'.repeat(n);

// A DHCPDISCOVER as RFC 2131 §2 figure 1 lays it out, from a client with MAC 06:11:22:33:44:55
// that asks for a broadcast reply, with options 53, 61, 50, 55 (RFC 2132 §9.6, §9.14, §9.1, §9.8).
const DISCOVER = hex(`
  01 01 06 00            # op BOOTREQUEST, htype Ethernet, hlen 6, hops 0
  39 03 f3 26            # xid
  00 03 80 00            # secs 3, flags BROADCAST
  00 00 00 00            # ciaddr
  00 00 00 00            # yiaddr
  00 00 00 00            # siaddr
  00 00 00 00            # giaddr
  06 11 22 33 44 55 ${zeros(10)}   # chaddr (16)
  ${zeros(64)}           # sname
  ${zeros(128)}          # file
  63 82 53 63            # magic cookie 99.130.83.99
  35 01 01               # 53 message type: DISCOVER
  3d 07 01 06 11 22 33 44 55       # 61 client identifier: type 1 + MAC
  32 04 0a 37 00 02      # 50 requested address 10.55.0.2
  37 04 01 03 06 0f      # 55 parameter request list: mask, router, DNS, domain
  ff                     # end
`);

test('DISCOVER: every fixed field and option at its RFC 2131 offset', () => {
  assert.is(DISCOVER.length, 240 + 3 + 9 + 6 + 6 + 1);
  const m = decodeDhcp(DISCOVER);
  assert.is(m.op, 1);
  assert.is(m.htype, 1);
  assert.is(m.hlen, 6);
  assert.is(m.xid, 0x3903f326);
  assert.is(m.secs, 3);
  assert.is(m.flags, BROADCAST_FLAG);
  assert.is(m.ciaddr, '0.0.0.0');
  assert.is(clientHardwareAddress(m), '06:11:22:33:44:55');
  assert.is(messageType(m), DhcpType.DISCOVER);
  assert.is(addressOption(m, DhcpOption.REQUESTED_IP), '10.55.0.2');
  assert.equal([...m.options.keys()], [53, 61, 50, 55]);
  assert.equal([...(m.options.get(55) ?? [])], [1, 3, 6, 15]);
  assert.is(m.sname, '');
  assert.is(m.file, '');
});

test('encode: a reply round-trips and lays out the fixed fields, cookie, options and END', () => {
  const reply: DhcpMessage = {
    op: 2,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x3903f326,
    secs: 0,
    flags: BROADCAST_FLAG,
    ciaddr: '0.0.0.0',
    yiaddr: '10.55.0.2',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.concat([Buffer.from('061122334455', 'hex'), Buffer.alloc(10)]),
    sname: '',
    file: '',
    options: new Map([
      [53, Buffer.from([2])],
      [54, Buffer.from([10, 55, 0, 1])],
      [51, Buffer.from([0, 0, 0x0e, 0x10])],
      [1, Buffer.from([255, 255, 255, 252])],
    ]),
  };
  const b = encodeDhcp(reply);
  // BOOTP's 300-byte minimum: short replies are zero-padded.
  assert.is(b.length, 300);
  assert.is(b.subarray(0, 4).toString('hex'), '02010600');
  assert.is(b.readUInt32BE(DhcpOffset.XID), 0x3903f326);
  assert.is(b.readUInt16BE(DhcpOffset.FLAGS), 0x8000);
  assert.is(b.subarray(DhcpOffset.YIADDR, DhcpOffset.YIADDR + 4).toString('hex'), '0a370002');
  assert.is(b.subarray(DhcpOffset.CHADDR, DhcpOffset.CHADDR + 6).toString('hex'), '061122334455');
  assert.is(b.subarray(236, 240).toString('hex'), '63825363');
  assert.is(b.subarray(240, 240 + 22).toString('hex'), '350102' + '36040a370001' + '330400000e10' + '0104fffffffc' + 'ff');
  assert.ok(b.subarray(262).every((x) => x === 0), 'padding is zeros');
  const back = decodeDhcp(b);
  assert.is(back.yiaddr, '10.55.0.2');
  assert.equal([...back.options.entries()].map(([k, v]) => [k, v.toString('hex')]), [...reply.options.entries()].map(([k, v]) => [k, v.toString('hex')]));
});

test('options: PAD bytes are skipped, a repeated option is concatenated (RFC 3396), long values split on encode', () => {
  const b = Buffer.from(DISCOVER);
  const withPad = Buffer.concat([b.subarray(0, 240), hex('00 00 35 01 03 00 0c 02 61 62 0c 01 63 ff')]);
  const m = decodeDhcp(withPad);
  assert.is(messageType(m), DhcpType.REQUEST);
  assert.is(m.options.get(12)?.toString(), 'abc');
  const long = Buffer.alloc(300, 0x41);
  const enc = encodeDhcp({ ...m, options: new Map([[43, long]]) });
  assert.is(enc[240], 43);
  assert.is(enc[241], 255);
  assert.is(enc[240 + 2 + 255], 43);
  assert.is(enc[240 + 2 + 255 + 1], 45);
  assert.ok(decodeDhcp(enc).options.get(43)?.equals(long));
});

test('option overload (52): options continue in file, then sname; those fields are then empty', () => {
  const b = Buffer.from(DISCOVER);
  const head = Buffer.from(b.subarray(0, 240));
  hex('0c 03 66 69 6c ff').copy(head, DhcpOffset.FILE); // host name "fil" in file
  hex('0f 02 73 6e ff').copy(head, DhcpOffset.SNAME); // domain "sn" in sname
  const m = decodeDhcp(Buffer.concat([head, hex('35 01 01 34 01 03 ff')]));
  assert.is(m.options.get(12)?.toString(), 'fil');
  assert.is(m.options.get(15)?.toString(), 'sn');
  assert.is(m.file, '');
  assert.is(m.sname, '');
  // Without overload the same bytes are plain NUL-terminated strings.
  const plain = decodeDhcp(Buffer.concat([head, hex('35 01 01 ff')]));
  assert.is(plain.file, '\x0c\x03fil\xff');
  assert.is(plain.options.has(12), false);
});

/** The DhcpError code decodeDhcp gives, or 'ok'. */
function codeOf(b: Buffer): string {
  try {
    decodeDhcp(b);
    return 'ok';
  } catch (e) {
    assert.instance(e, DhcpError);
    return (e as DhcpError).code;
  }
}

test('malformed messages are typed errors naming the problem', () => {
  assert.is(codeOf(Buffer.alloc(0)), 'DHCP_SHORT');
  assert.is(codeOf(DISCOVER.subarray(0, 239)), 'DHCP_SHORT');
  const badOp = Buffer.from(DISCOVER);
  badOp[0] = 3;
  assert.is(codeOf(badOp), 'DHCP_BAD_OP');
  const badHlen = Buffer.from(DISCOVER);
  badHlen[2] = 17;
  assert.is(codeOf(badHlen), 'DHCP_BAD_HLEN');
  const badCookie = Buffer.from(DISCOVER);
  badCookie[239] = 0x64;
  assert.is(codeOf(badCookie), 'DHCP_BAD_COOKIE');
  const head = DISCOVER.subarray(0, 240);
  // An option whose length runs past the end, and one with no length byte at all.
  assert.is(codeOf(Buffer.concat([head, hex('35 05 01')])), 'DHCP_BAD_OPTION');
  assert.is(codeOf(Buffer.concat([head, hex('35 01 01 0c')])), 'DHCP_BAD_OPTION');
  assert.is(codeOf(Buffer.concat([head, hex('34 01 07 ff')])), 'DHCP_BAD_OVERLOAD');
  assert.is(codeOf(Buffer.concat([head, hex('34 00 ff')])), 'DHCP_BAD_OVERLOAD');
  // An overflowing option inside an overloaded `file` is caught too.
  const ovl = Buffer.from(head);
  hex('0c 7f 61').copy(ovl, DhcpOffset.FILE);
  assert.is(codeOf(Buffer.concat([ovl, hex('34 01 01 ff')])), 'DHCP_BAD_OPTION');
  // Tolerated: no END option when the last TLV is complete; nothing after the cookie.
  assert.is(codeOf(Buffer.concat([head, hex('35 01 01')])), 'ok');
  assert.is(codeOf(Buffer.from(head)), 'ok');
  try {
    decodeDhcp(Buffer.concat([head, hex('35 05 01')]));
  } catch (e) {
    assert.match((e as Error).message, /option 53 in options at byte 0 says 5 bytes, 1 are left/);
  }
});

test('a message from a byte offset inside a pooled buffer decodes the same', () => {
  const pool = Buffer.alloc(DISCOVER.length + 13);
  DISCOVER.copy(pool, 13);
  const m = decodeDhcp(pool.subarray(13));
  assert.is(m.xid, 0x3903f326);
  assert.is(clientHardwareAddress(m), '06:11:22:33:44:55');
});

test('encode refuses what the wire cannot hold', () => {
  const m = decodeDhcp(DISCOVER);
  assert.throws(() => encodeDhcp({ ...m, yiaddr: '10.55.0' }), (e: unknown) => e instanceof DhcpError && /yiaddr/.test((e as Error).message));
  assert.throws(() => encodeDhcp({ ...m, options: new Map([[255, Buffer.alloc(1)]]) }), /codes are 1..254/);
  assert.throws(() => encodeDhcp({ ...m, sname: 'x'.repeat(64) }), /sname/);
  assert.throws(() => encodeDhcp({ ...m, hlen: 17 }), /hlen/);
});

test('fuzz: random and mutated packets give a message or a DhcpError, never anything else', () => {
  const next = rng(0x0dcb);
  let ok = 0;
  let errors = 0;
  for (let i = 0; i < 4000; i++) {
    let b: Buffer;
    if (i % 3 === 0) {
      b = randomBytes(next, Math.floor(next() * 600));
    } else {
      // A valid header and well-formed random options (so the option parser goes deep), then
      // every third one mutated in a few bytes anywhere, the header included.
      const tlvs: Buffer[] = [];
      for (let n = Math.floor(next() * 8); n > 0; n--) {
        const code = next() < 0.1 ? 52 : 1 + Math.floor(next() * 254);
        const len = Math.floor(next() * 12);
        tlvs.push(Buffer.from([code, len]), randomBytes(next, len));
      }
      if (next() < 0.8) tlvs.push(Buffer.from([255]));
      b = Buffer.concat([DISCOVER.subarray(0, 240), ...tlvs]);
      if (i % 3 === 2) for (let k = 0; k < 3; k++) b[Math.floor(next() * b.length)] = Math.floor(next() * 256);
    }
    try {
      const m = decodeDhcp(b);
      ok++;
      // Whatever decodes also encodes (options are 1..254, values bounded by the input).
      decodeDhcp(encodeDhcp(m));
    } catch (e) {
      if (!(e instanceof DhcpError)) throw new Error(`iteration ${i}: ${(e as Error).stack} for ${b.toString('hex')}`);
      errors++;
    }
  }
  assert.ok(ok > 500, `decoded ${ok}`);
  assert.ok(errors > 500, `rejected ${errors}`);
});

test.run();
