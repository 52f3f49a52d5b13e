// ALUA with two paths to one LUN: two target portal groups of one target, each on its own
// portal and in its own port group; group 2 is standby. Checked with libiscsi's tools and
// a raw initiator: what each state allows, and what REPORT TARGET PORT GROUPS says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { MiniInitiator, senseKey } from './mini-initiator';
import { parseUrl, run, startLunbox, tempDir, writeJson } from './helpers';

const IQN = 'iqn.2026-11.org.lunbox:alua';
const READ10 = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
const TUR = Buffer.from([0, 0, 0, 0, 0, 0]);
// MAINTENANCE IN / REPORT TARGET PORT GROUPS (SPC-4 §6.36), allocation length 1024.
const RTPG = Buffer.from([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0]);

async function session(url: string): Promise<MiniInitiator> {
  const u = parseUrl(url);
  const ini = new MiniInitiator(u.host, u.port, 'iqn.2026-11.org.lunbox:multipath-host');
  await ini.login(u.iqn);
  await ini.command(TUR); // the power-on unit attention
  return ini;
}

/** RTPG descriptors: port group id → { state, relative port ids }. */
function parseRtpg(d: Buffer): Map<number, { state: number; ports: number[] }> {
  const out = new Map<number, { state: number; ports: number[] }>();
  const len = d.readUInt32BE(0);
  let o = 4;
  while (o + 8 <= 4 + len && o + 8 <= d.length) {
    const state = d[o]! & 0x0f;
    const id = d.readUInt16BE(o + 2);
    const count = d[o + 7]!;
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(d.readUInt16BE(o + 8 + i * 4 + 2));
    out.set(id, { state, ports });
    o += 8 + count * 4;
  }
  return out;
}

test('two portals in two port groups: the standby path refuses media access, RTPG reports both', async () => {
  const { dir, cleanup } = tempDir();
  const cfg = writeJson(join(dir, 'alua.json'), {
    version: 1,
    backstores: [{ name: 'shared', type: 'ram', size: '16M' }],
    iscsi: {
      alua: 'both',
      portGroups: [
        { id: 1, state: 'active/optimized', ports: [1], preferred: true },
        { id: 2, state: 'standby', ports: [2] },
      ],
      targets: [
        { iqn: IQN, tpgt: 1, portals: [{ address: '127.0.0.1', port: 0 }], luns: [{ lun: 0, backstore: 'shared' }] },
        { iqn: IQN, tpgt: 2, portals: [{ address: '127.0.0.2', port: 0 }], luns: [{ lun: 0, backstore: 'shared' }] },
      ],
    },
  });
  const lb = await startLunbox(['--config', cfg, '--control', 'none'], { count: 2 });
  try {
    const [active, standby] = lb.urls;
    assert.match(active ?? '', /^iscsi:\/\/127\.0\.0\.1:/);
    assert.match(standby ?? '', /^iscsi:\/\/127\.0\.0\.2:/);
    // libiscsi's tools work on the active path (they give up on a standby path: their
    // TEST UNIT READY after login gets NOT READY 04/0B, as SPC-4 §5.15.2.4.4 wants).
    const inq = await run('iscsi-inq', [active ?? '']);
    assert.is(inq.code, 0, inq.stderr);
    assert.match(inq.stdout, /TPGS:3/, 'implicit and explicit ALUA');
    const a = await session(active ?? '');
    const s = await session(standby ?? '');
    // INQUIRY is allowed in standby; byte 5 bits 5-4 are TPGS.
    const sInq = await s.command(Buffer.from([0x12, 0, 0, 0, 96, 0]), { dataIn: 96 });
    assert.is(sInq.status, 0, 'INQUIRY on the standby path');
    assert.is((sInq.data[5]! >> 4) & 3, 3);
    assert.is((await s.command(TUR)).status, 0x02, 'TEST UNIT READY on the standby path is NOT READY');
    assert.is((await a.command(READ10, { dataIn: 512 })).status, 0, 'active/optimized path reads');
    const r = await s.command(READ10, { dataIn: 512 });
    assert.is(r.status, 0x02, 'standby path: CHECK CONDITION');
    assert.equal(senseKey(r.sense), { key: 0x02, asc: 0x04, ascq: 0x0b }, 'NOT READY, TARGET PORT IN STANDBY STATE');
    for (const ini of [a, s]) {
      const rt = await ini.command(RTPG, { dataIn: 1024 });
      assert.is(rt.status, 0, 'RTPG is allowed in every state');
      const groups = parseRtpg(rt.data);
      assert.equal(groups.get(1), { state: 0x0, ports: [1] }, 'group 1 active/optimized with relative port 1');
      assert.equal(groups.get(2), { state: 0x2, ports: [2] }, 'group 2 standby with relative port 2');
    }
    a.close();
    s.close();
  } finally {
    await lb.stop();
    cleanup();
  }
});

test.run();
