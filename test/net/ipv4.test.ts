import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatIpv4, isPrivateIpv4, macProblem, parseIpv4, parseMac, planLink } from '../../src/net/ipv4';

test('dotted quads: parsed exactly, leading zeros and out-of-range octets refused', () => {
  assert.is(parseIpv4('10.55.0.1'), 0x0a370001);
  assert.is(parseIpv4('255.255.255.255'), 0xffffffff);
  assert.is(formatIpv4(0xc0a80701), '192.168.7.1');
  for (const bad of ['10.55.0', '10.55.0.256', '010.1.1.1', '1.2.3.4.5', ' 1.2.3.4', 'a.b.c.d', '']) assert.is(parseIpv4(bad), undefined, bad);
});

test('link plans: the board address, the one host address, mask and broadcast', () => {
  assert.equal(planLink('10.55.0.1/30'), {
    board: '10.55.0.1', host: '10.55.0.2', prefix: 30, netmask: '255.255.255.252', network: '10.55.0.0', broadcast: '10.55.0.3', cidr: '10.55.0.1/30',
  });
  // The board on the first address of a /29 or /24: the host is the next one; else the first.
  assert.is((planLink('192.168.7.1/29') as { host: string }).host, '192.168.7.2');
  assert.is((planLink('192.168.7.2/30') as { host: string }).host, '192.168.7.1');
  assert.is((planLink('10.55.0.1/24') as { broadcast: string }).broadcast, '10.55.0.255');
});

test('link plans: what cannot work is a sentence saying why', () => {
  assert.match(planLink('10.55.0.1') as string, 'ADDRESS/PREFIX');
  assert.match(planLink('10.55.0.300/30') as string, 'not an IPv4 address');
  assert.match(planLink('10.55.0.1/31') as string, '/8../30');
  assert.match(planLink('10.55.0.1/7') as string, '/8../30');
  assert.match(planLink('10.55.0.0/30') as string, 'network address');
  assert.match(planLink('10.55.0.3/30') as string, 'broadcast address');
});

test('private ranges (RFC 1918)', () => {
  for (const a of ['10.0.0.1', '172.16.0.1', '172.31.255.254', '192.168.7.1']) assert.ok(isPrivateIpv4(parseIpv4(a) as number), a);
  for (const a of ['172.32.0.1', '172.15.255.255', '192.169.0.1', '8.8.8.8', '169.254.1.1']) assert.not.ok(isPrivateIpv4(parseIpv4(a) as number), a);
});

test('MAC addresses: colons or dashes; multicast and all-zero ones cannot name a link end', () => {
  assert.is(parseMac('02:AB:cd:00:11:22')?.toString('hex'), '02abcd001122');
  assert.is(parseMac('02-ab-cd-00-11-22')?.toString('hex'), '02abcd001122');
  assert.is(parseMac('02:ab-cd:00:11:22'), undefined);
  assert.is(parseMac('02:ab:cd:00:11'), undefined);
  assert.is(macProblem(Buffer.from('02abcd001122', 'hex')), undefined);
  assert.match(macProblem(Buffer.from('01005e000001', 'hex')) ?? '', 'multicast');
  assert.match(macProblem(Buffer.alloc(6)) ?? '', 'all zeros');
});

test.run();
