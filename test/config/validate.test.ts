import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, backstoreBytes, configWarnings, resolveTarget, validateConfig } from '../../src/config';
import type { ConfigIssue } from '../../src/config';
import { fullExample } from './example';

// Tests mutate configs into shapes the types forbid.
type Any = any;

function issuesOf(raw: unknown): ConfigIssue[] {
  try {
    validateConfig(raw);
    return [];
  } catch (err) {
    assert.instance(err, ConfigError);
    return [...(err as ConfigError).errors];
  }
}

/** Mutate the full example, validate, and expect exactly one issue with this code, path and text. */
function expectIssue(mutate: (c: Any) => void, code: string, path: string, includes: string): void {
  const c: Any = fullExample();
  mutate(c);
  const issues = issuesOf(c);
  assert.is(issues.length, 1, `issues: ${JSON.stringify(issues, null, 1)}`);
  const i = issues[0]!;
  assert.is(i.path, path);
  assert.is(i.code, code);
  assert.ok(i.message.includes(includes), `message: ${i.message}`);
}

test('the full example is valid and comes back equal (a copy)', () => {
  const raw = fullExample();
  const cfg = validateConfig(raw);
  assert.equal(cfg, raw);
  assert.is.not(cfg, raw);
});

test('the smallest config: version and empty backstores', () => {
  assert.equal(validateConfig({ version: 1, backstores: [] }), { version: 1, backstores: [] });
});

test('not an object at top level', () => {
  const issues = issuesOf([1]);
  assert.is(issues[0]?.code, 'TYPE');
  assert.is(issues[0]?.path, '');
});

test('version other than 1 is refused', () => {
  expectIssue((c) => (c.version = 2), 'ENUM', 'version', 'this lunbox reads version 1');
});

test('missing version and backstores are each reported', () => {
  const issues = issuesOf({});
  assert.equal(issues.map((i) => [i.code, i.path]), [['MISSING', 'version'], ['MISSING', 'backstores']]);
});

test('unknown top-level key names the key and the valid ones', () => {
  expectIssue((c) => (c.iscssi = {}), 'UNKNOWN_KEY', 'iscssi', "did you mean 'iscsi'?");
});

test('a typo deep inside names its full path and suggests the key', () => {
  expectIssue((c) => (c.iscsi.targets[0].luns[1].backstor = 'x'), 'UNKNOWN_KEY', 'iscsi.targets[0].luns[1].backstor', 'valid keys: lun, backstore, readOnly');
});

test('a typo in iSCSI params is caught', () => {
  expectIssue((c) => (c.iscsi.targets[0].params.maxBurstLenght = 1), 'UNKNOWN_KEY', 'iscsi.targets[0].params.maxBurstLenght', "did you mean 'maxBurstLength'?");
});

test('opaque sections are kept as given', () => {
  const c: Any = fullExample();
  c.sbp2 = { units: [{ anything: 1 }] };
  assert.equal(validateConfig(c).sbp2, { units: [{ anything: 1 }] });
});

test('usb: LUNs 0..15 naming known backstores, gadget keys checked', () => {
  expectIssue((c) => (c.usb.luns[0].lun = 16), 'RANGE', 'usb.luns[0].lun', '0..15');
  expectIssue((c) => (c.usb.luns[0].backstore = 'nope'), 'REFERENCE', 'usb.luns[0].backstore', "no backstore named 'nope'");
  expectIssue((c) => (c.usb.gadget.idVendor = 1), 'UNKNOWN_KEY', 'usb.gadget.idVendor', 'vendorId');
  expectIssue((c) => (c.usb.gadget.maxPower = 900), 'RANGE', 'usb.gadget.maxPower', '2..500');
  expectIssue((c) => (c.usb.fastPath = 'off'), 'TYPE', 'usb.fastPath', 'true or false');
});

test('ALUA port groups cover every relative port once, with valid states', () => {
  const c: Any = fullExample();
  c.iscsi.alua = 'both';
  c.iscsi.portGroups = [
    { id: 1, state: 'active/optimized', ports: [1] },
    { id: 2, state: 'standby', ports: [2] },
  ];
  validateConfig(c);
  expectIssue((x) => ((x.iscsi.alua = 'both'), (x.iscsi.portGroups = [{ id: 1, state: 'standby', ports: [1] }])), 'MISSING', 'iscsi.portGroups', 'relative port 2');
  expectIssue((x) => ((x.iscsi.portGroups = [{ id: 1, state: 'sleepy', ports: [1, 2] }])), 'ENUM', 'iscsi.portGroups[0].state', 'active/optimized');
  expectIssue((x) => ((x.iscsi.portGroups = [{ id: 1, state: 'standby', ports: [1, 2, 7] }])), 'REFERENCE', 'iscsi.portGroups[0].ports[2]', 'relative port 7');
});

test('physicalBlockSize is the block size times a power of two; protection 0, 1 or 3', () => {
  expectIssue((c) => (c.backstores[0].physicalBlockSize = 1536), 'RANGE', 'backstores[0].physicalBlockSize', 'power of two');
  expectIssue((c) => (c.backstores[0].protection = 2), 'ENUM', 'backstores[0].protection', '0 (can be formatted with PI), 1 or 3');
  const c: Any = fullExample();
  c.backstores[0].physicalBlockSize = 4096;
  c.backstores[0].protection = 1;
  validateConfig(c);
});

test('opaque sections must be objects', () => {
  expectIssue((c) => (c.sbp2 = 'yes'), 'TYPE', 'sbp2', 'expected an object');
});

test('all problems are collected, not only the first', () => {
  const c: Any = fullExample();
  c.backstores[0].type = 'tape';
  c.iscsi.targets[0].luns[0].lun = 99999;
  c.iscsi.portals[0].port = 70000;
  const issues = issuesOf(c);
  assert.equal(issues.map((i) => i.path), ['backstores[0].type', 'iscsi.portals[0].port', 'iscsi.targets[0].luns[0].lun']);
});

test('ConfigError message lists every problem with its path', () => {
  const c: Any = fullExample();
  c.backstores[0].type = 'tape';
  c.version = 3;
  try {
    validateConfig(c);
    assert.unreachable();
  } catch (err) {
    const e = err as ConfigError;
    assert.is(e.code, 'ENUM');
    assert.is(e.path, 'version');
    assert.match(e.message, '2 problems');
    assert.match(e.message, 'backstores[0].type: the string "tape" is not valid: expected one of "ram", "file", "block"');
  }
});

// --- backstores -------------------------------------------------------------------------

test('duplicate backstore names', () => {
  expectIssue((c) => c.backstores.push({ name: 'ram0', type: 'ram', size: 4096 }), 'DUPLICATE', 'backstores[3].name', 'also backstores[0]');
});

test('backstore name with a slash is refused', () => {
  expectIssue((c) => c.backstores.push({ name: 'a/b', type: 'ram', size: 4096 }), 'FORMAT', 'backstores[3].name', 'A-Z a-z 0-9 _ . -');
});

test('unparseable size names the bad text', () => {
  expectIssue((c) => (c.backstores[0].size = '64Q'), 'SIZE', 'backstores[0].size', '"64Q"');
});

test('zero and negative sizes are refused', () => {
  expectIssue((c) => (c.backstores[0].size = 0), 'SIZE', 'backstores[0].size', '> 0');
  expectIssue((c) => (c.backstores[0].size = '0M'), 'SIZE', 'backstores[0].size', 'more than 0');
});

test('size must be a multiple of blockSize', () => {
  expectIssue((c) => (c.backstores[1].size = 1073741824 + 512), 'SIZE', 'backstores[1].size', 'multiple of the block size 4096');
});

test('blockSize must be 512/1024/2048/4096', () => {
  expectIssue((c) => (c.backstores[1].blockSize = 520), 'ENUM', 'backstores[1].blockSize', '512, 1024, 2048, 4096');
});

test('a backstore too broken to name causes no echo errors in the LUNs that use it', () => {
  expectIssue((c) => delete c.backstores[0].name, 'MISSING', 'backstores[0].name', 'required');
});

test('a LUN too broken to number causes no echo errors in the ACLs', () => {
  expectIssue((c) => (c.iscsi.targets[0].luns[0].lun = -1), 'RANGE', 'iscsi.targets[0].luns[0].lun', '0..16383');
});

test('ram needs a size', () => {
  expectIssue((c) => delete c.backstores[0].size, 'MISSING', 'backstores[0].size', 'needs a size');
});

test('file needs a path', () => {
  expectIssue((c) => delete c.backstores[1].path, 'MISSING', 'backstores[1].path', 'file backstore needs a path');
});

test('block needs a path and takes no size', () => {
  expectIssue((c) => delete c.backstores[2].path, 'MISSING', 'backstores[2].path', 'block backstore needs a path');
  expectIssue((c) => (c.backstores[2].size = '1G'), 'FORMAT', 'backstores[2].size', 'from the device');
});

test('ram takes no path', () => {
  expectIssue((c) => (c.backstores[0].path = '/x'), 'FORMAT', 'backstores[0].path', 'no path');
});

test('block backstores cannot be thin provisioned', () => {
  expectIssue((c) => (c.backstores[2].thinProvisioning = true), 'FORMAT', 'backstores[2].thinProvisioning', 'cannot unmap');
});

test('INQUIRY strings are bounded by their SPC field widths', () => {
  expectIssue((c) => (c.backstores[1].vendor = 'VENDOR-TOO-LONG'), 'RANGE', 'backstores[1].vendor', 'holds 8');
  expectIssue((c) => (c.backstores[1].product = 'é'), 'FORMAT', 'backstores[1].product', 'printable ASCII');
});

test('booleans must be booleans', () => {
  expectIssue((c) => (c.backstores[2].readOnly = 'yes'), 'TYPE', 'backstores[2].readOnly', 'expected true or false');
});

// --- iSCSI ------------------------------------------------------------------------------

test('uppercase IQN is refused with the lowercase spelling', () => {
  expectIssue((c) => (c.iscsi.targets[0].iqn = 'iqn.2024-01.org.Lunbox:disk1'), 'FORMAT', 'iscsi.targets[0].iqn', "write 'iqn.2024-01.org.lunbox:disk1'");
});

test('bad initiator name in an ACL', () => {
  expectIssue((c) => (c.iscsi.targets[0].acls[1].initiator = 'eui.12'), 'FORMAT', 'iscsi.targets[0].acls[1].initiator', 'eui. + 16 hex');
});

test('same iqn and tpgt twice is refused; a second tpgt is fine', () => {
  expectIssue((c) => (c.iscsi.targets[1].iqn = c.iscsi.targets[0].iqn), 'DUPLICATE', 'iscsi.targets[1].iqn', 'tpgt 1 is defined twice');
  const c: Any = fullExample();
  c.iscsi.targets[1].iqn = c.iscsi.targets[0].iqn;
  c.iscsi.targets[1].tpgt = 2;
  validateConfig(c);
});

test('LUN numbers are 0..16383', () => {
  expectIssue((c) => (c.iscsi.targets[0].luns[0].lun = 16384), 'RANGE', 'iscsi.targets[0].luns[0].lun', '0..16383');
  expectIssue((c) => (c.iscsi.targets[0].luns[0].lun = 1.5), 'TYPE', 'iscsi.targets[0].luns[0].lun', 'whole number');
});

test('LUN numbers are unique per target', () => {
  expectIssue((c) => (c.iscsi.targets[0].luns[2].lun = 0), 'DUPLICATE', 'iscsi.targets[0].luns[2].lun', 'also iscsi.targets[0].luns[0]');
});

test('the same LUN number in two targets is fine', () => {
  const c: Any = fullExample();
  c.iscsi.targets[1].luns[0].lun = 0;
  validateConfig(c);
});

test('a LUN referring to a missing backstore lists the defined ones', () => {
  expectIssue((c) => (c.iscsi.targets[0].luns[1].backstore = 'ram1'), 'REFERENCE', 'iscsi.targets[0].luns[1].backstore', 'defined: ram0, disk1, sd');
});

test('an ACL mapped LUN must point at an existing target LUN', () => {
  expectIssue((c) => (c.iscsi.targets[0].acls[0].luns[0].targetLun = 7), 'REFERENCE', 'iscsi.targets[0].acls[0].luns[0].targetLun', 'its LUNs: 0, 1, 2');
  expectIssue((c) => (c.iscsi.targets[0].acls[0].luns[0] = { lun: 9 }), 'REFERENCE', 'iscsi.targets[0].acls[0].luns[0].lun', 'no LUN 9');
});

test('mapped LUN numbers are unique per ACL', () => {
  expectIssue((c) => (c.iscsi.targets[0].acls[0].luns[1].lun = 0), 'DUPLICATE', 'iscsi.targets[0].acls[0].luns[1].lun', 'defined twice');
});

test('two ACLs for one initiator are refused', () => {
  expectIssue((c) => (c.iscsi.targets[0].acls[1].initiator = c.iscsi.targets[0].acls[0].initiator), 'DUPLICATE', 'iscsi.targets[0].acls[1].initiator', 'two ACLs');
});

test('ports are 1..65535', () => {
  expectIssue((c) => (c.iscsi.portals[0].port = 65536), 'RANGE', 'iscsi.portals[0].port', '0..65535');
});

test('addresses are IP literals or localhost', () => {
  expectIssue((c) => (c.iscsi.portals[0].address = 'example.com'), 'FORMAT', 'iscsi.portals[0].address', "IPv4/IPv6 address or 'localhost'");
  expectIssue((c) => (c.iscsi.portals[1].address = '[::1]'), 'FORMAT', 'iscsi.portals[1].address', 'without brackets');
});

test('the same portal twice is refused (port defaulting to 3260)', () => {
  expectIssue((c) => (c.iscsi.portals[1] = { address: '0.0.0.0' }), 'DUPLICATE', 'iscsi.portals[1]', '0.0.0.0:3260 is listed twice');
});

test('tpgt is 1..65535', () => {
  expectIssue((c) => (c.iscsi.targets[0].tpgt = 0), 'RANGE', 'iscsi.targets[0].tpgt', '1..65535');
});

test('targets is required in the iscsi section', () => {
  expectIssue((c) => delete c.iscsi.targets, 'MISSING', 'iscsi.targets', "'targets' is required");
});

// --- CHAP -------------------------------------------------------------------------------

test('CHAP needs userid and password', () => {
  expectIssue((c) => delete c.iscsi.discoveryAuth.password, 'MISSING', 'iscsi.discoveryAuth.password', 'required');
});

test('CHAP secrets longer than 255 bytes are refused', () => {
  expectIssue((c) => (c.iscsi.discoveryAuth.password = 'x'.repeat(256)), 'RANGE', 'iscsi.discoveryAuth.password', 'the limit is 255');
});

test('mutual CHAP needs both name and secret', () => {
  expectIssue((c) => delete c.iscsi.targets[0].acls[0].auth.mutualUserid, 'MISSING', 'iscsi.targets[0].acls[0].auth.mutualUserid', 'needs both');
});

test('mutual CHAP secret must differ from the one-way secret', () => {
  expectIssue((c) => (c.iscsi.targets[0].acls[0].auth.mutualPassword = 'alice-secret-1'), 'CHAP', 'iscsi.targets[0].acls[0].auth.mutualPassword', 'must differ');
});

test('short CHAP secrets are accepted but warned about', () => {
  const c: Any = fullExample();
  c.iscsi.targets[0].auth = { userid: 'u', password: 'short' };
  const cfg = validateConfig(c);
  const w = configWarnings(cfg);
  assert.equal(w.map((i) => i.path), ['iscsi.targets[0].auth.password']);
  assert.match(w[0]!.message, '96 bits');
});

// --- iSCSI params -----------------------------------------------------------------------

test('firstBurstLength may not exceed maxBurstLength', () => {
  expectIssue((c) => (c.iscsi.targets[0].params.firstBurstLength = 2097152), 'RANGE', 'iscsi.targets[0].params.firstBurstLength', 'exceeds maxBurstLength 1048576');
});

test('data segment lengths are 512..16777215', () => {
  expectIssue((c) => (c.iscsi.targets[0].params.maxRecvDataSegmentLength = 256), 'RANGE', 'iscsi.targets[0].params.maxRecvDataSegmentLength', '512..16777215');
});

test('digests are None/CRC32C, non-empty, no repeats', () => {
  expectIssue((c) => (c.iscsi.targets[0].params.headerDigest = ['crc32c']), 'ENUM', 'iscsi.targets[0].params.headerDigest[0]', '"None", "CRC32C"');
  expectIssue((c) => (c.iscsi.targets[0].params.dataDigest = []), 'FORMAT', 'iscsi.targets[0].params.dataDigest', 'at least one');
  expectIssue((c) => (c.iscsi.targets[0].params.dataDigest = ['None', 'None']), 'DUPLICATE', 'iscsi.targets[0].params.dataDigest', 'twice');
});

// --- helpers ----------------------------------------------------------------------------

test('resolveTarget applies tpgt, portal and demo-mode defaults', () => {
  const cfg = validateConfig(fullExample());
  const iscsi = cfg.iscsi!;
  assert.equal(resolveTarget(iscsi, iscsi.targets[0]!), {
    tpgt: 1,
    portals: [{ address: '0.0.0.0', port: 3260 }, { address: '::', port: 3260 }],
    demoMode: false,
  });
  assert.equal(resolveTarget(iscsi, iscsi.targets[1]!), {
    tpgt: 1,
    portals: [{ address: '127.0.0.1', port: 3261 }, { address: 'localhost', port: 3260 }],
    demoMode: true,
  });
});

test('backstoreBytes parses human sizes', () => {
  const cfg = validateConfig(fullExample());
  assert.equal(cfg.backstores.map(backstoreBytes), [64 << 20, 2 ** 30, undefined]);
});

test('demoMode false without ACLs is warned about', () => {
  const c: Any = fullExample();
  c.iscsi.targets[1].demoMode = false;
  assert.ok(configWarnings(validateConfig(c)).some((w) => w.path === 'iscsi.targets[1].demoMode'));
});

test('removable is a boolean backstore setting', () => {
  const c: Any = fullExample();
  c.backstores[0].removable = true;
  assert.is(validateConfig(c).backstores[0]!.removable, true);
  expectIssue((x) => (x.backstores[0].removable = 'yes'), 'TYPE', 'backstores[0].removable', 'expected true or false');
});

test('cdrom: a file backstore with an ISO path, or no path (an empty drive)', () => {
  const base = (extra: Any) => ({ version: 1, backstores: [{ name: 'cd0', type: 'file', cdrom: true, ...extra }] });
  assert.is(validateConfig(base({ path: '/srv/a.iso' })).backstores[0]!.cdrom, true);
  assert.is(validateConfig(base({})).backstores[0]!.path, undefined);
  assert.ok(validateConfig(base({ path: '/a.iso', readOnly: true, blockSize: 2048, removable: true })));
  const one = (raw: unknown, path: string, code: string, text: string) => {
    const issues = issuesOf(raw);
    assert.is(issues.length, 1, JSON.stringify(issues));
    assert.equal([issues[0]!.path, issues[0]!.code], [path, code]);
    assert.ok(issues[0]!.message.includes(text), issues[0]!.message);
  };
  one({ version: 1, backstores: [{ name: 'cd0', type: 'block', path: '/dev/sr0', cdrom: true }] }, 'backstores[0].type', 'FORMAT', "type must be 'file'");
  one(base({ path: '/a.iso', readOnly: false }), 'backstores[0].readOnly', 'FORMAT', 'read-only');
  one(base({ path: '/a.iso', blockSize: 512 }), 'backstores[0].blockSize', 'FORMAT', '2048-byte blocks');
  one(base({ path: '/a.iso', size: '10M' }), 'backstores[0].size', 'FORMAT', 'not for a cdrom');
  one(base({ path: '/a.iso', removable: false }), 'backstores[0].removable', 'FORMAT', 'removable');
  one(base({ path: '/a.iso', cdrom: 'yes' }), 'backstores[0].cdrom', 'TYPE', 'expected true or false');
  // without cdrom a file backstore still needs its path
  one({ version: 1, backstores: [{ name: 'f', type: 'file' }] }, 'backstores[0].path', 'MISSING', 'needs a path');
});

test('usb.gadget.ncm: true, false or settings; bad address, lease, MACs each named by path', () => {
  for (const ncm of [true, false, {}, { address: '192.168.7.1/29', dhcp: false, leaseTime: 600, deviceMac: '02:00:00:00:00:01', hostMac: '06:00:00:00:00:01' }]) {
    const c: Any = fullExample();
    c.usb.gadget.ncm = ncm;
    assert.equal(issuesOf(c), [], JSON.stringify(ncm));
  }
  expectIssue((c) => (c.usb.gadget.ncm = 'yes'), 'TYPE', 'usb.gadget.ncm', 'expected true, false or an object with address, dhcp, leaseTime, deviceMac, hostMac');
  expectIssue((c) => (c.usb.gadget.ncm = { adress: '10.55.0.1/30' }), 'UNKNOWN_KEY', 'usb.gadget.ncm.adress', "did you mean 'address'");
  expectIssue((c) => (c.usb.gadget.ncm = { address: '10.55.0.1' }), 'FORMAT', 'usb.gadget.ncm.address', 'is not ADDRESS/PREFIX');
  expectIssue((c) => (c.usb.gadget.ncm = { address: '10.55.0.1/31' }), 'FORMAT', 'usb.gadget.ncm.address', 'must be /8../30');
  expectIssue((c) => (c.usb.gadget.ncm = { address: '10.55.0.3/30' }), 'FORMAT', 'usb.gadget.ncm.address', 'broadcast address');
  expectIssue((c) => (c.usb.gadget.ncm = { leaseTime: 10 }), 'RANGE', 'usb.gadget.ncm.leaseTime', '60..2592000');
  expectIssue((c) => (c.usb.gadget.ncm = { dhcp: 'on' }), 'TYPE', 'usb.gadget.ncm.dhcp', 'true or false');
  expectIssue((c) => (c.usb.gadget.ncm = { hostMac: '01:00:5e:00:00:01' }), 'FORMAT', 'usb.gadget.ncm.hostMac', 'multicast');
  expectIssue((c) => (c.usb.gadget.ncm = { deviceMac: '02:00:00:00:00' }), 'FORMAT', 'usb.gadget.ncm.deviceMac', 'not a MAC address');
  expectIssue((c) => (c.usb.gadget.ncm = { deviceMac: '02:00:00:00:00:01', hostMac: '02-00-00-00-00-01' }), 'FORMAT', 'usb.gadget.ncm.hostMac', 'must differ from deviceMac');
});

test('usb.gadget.ncm on a public address is valid but warned about', () => {
  const c: Any = fullExample();
  c.usb.gadget.ncm = { address: '8.8.8.1/30' };
  const w = configWarnings(validateConfig(c));
  assert.ok(w.some((i) => i.path === 'usb.gadget.ncm.address' && /not a private/.test(i.message)), JSON.stringify(w));
  c.usb.gadget.ncm = true;
  assert.not.ok(configWarnings(validateConfig(c)).some((i) => i.path.startsWith('usb')));
});

test.run();
