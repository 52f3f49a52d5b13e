// Persistent reservations over iSCSI: APTPL state survives kill -9 and a restart when a
// config (and so a state directory) exists, and is refused where nothing could keep it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MiniInitiator, senseKey } from './mini-initiator';
import { parseUrl, startLunbox, tempDir, writeJson } from './helpers';

const IQN = 'iqn.2026-11.org.lunbox:pr';
const HOLDER = 'iqn.2026-11.org.lunbox:cluster-node-a';
const OTHER = 'iqn.2026-11.org.lunbox:cluster-node-b';
const KEY = Buffer.from('00000000abcd0001', 'hex');

/** PERSISTENT RESERVE OUT (SPC-4 §6.16) with a 24-byte basic parameter list. */
function prOut(sa: number, type: number, key: Buffer, sark: Buffer, aptpl: boolean): { cdb: Buffer; data: Buffer } {
  const data = Buffer.alloc(24);
  key.copy(data, 0);
  sark.copy(data, 8);
  data[20] = aptpl ? 0x01 : 0;
  const cdb = Buffer.from([0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0]);
  return { cdb, data };
}
const NONE = Buffer.alloc(8);
const WRITE10 = Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
const READ_RESERVATION = Buffer.from([0x5e, 0x01, 0, 0, 0, 0, 0, 0x10, 0, 0]);
const TUR = Buffer.from([0, 0, 0, 0, 0, 0]);

/** Log in and swallow the power-on unit attention. */
async function session(url: string, name: string): Promise<MiniInitiator> {
  const u = parseUrl(url);
  const ini = new MiniInitiator(u.host, u.port, name);
  await ini.login(u.iqn);
  await ini.command(TUR);
  return ini;
}

test('APTPL reservation survives kill -9 and restart; the other initiator is still locked out', async () => {
  const { dir, cleanup } = tempDir();
  const cfg = writeJson(join(dir, 'lunbox.json'), {
    version: 1,
    backstores: [{ name: 'shared', type: 'file', path: join(dir, 'shared.img'), size: '16M', serial: 'pr-aptpl-1' }],
    iscsi: { portals: [{ address: '127.0.0.1', port: 0 }], targets: [{ iqn: IQN, luns: [{ lun: 0, backstore: 'shared' }] }] },
  });
  try {
    let lb = await startLunbox(['--config', cfg, '--control', 'none']);
    let a = await session(lb.urls[0] ?? '', HOLDER);
    const reg = prOut(0x00, 0, NONE, KEY, true); // REGISTER, APTPL
    assert.is((await a.command(reg.cdb, { dataOut: reg.data })).status, 0);
    const res = prOut(0x01, 0x01, KEY, NONE, true); // RESERVE, Write Exclusive
    assert.is((await a.command(res.cdb, { dataOut: res.data })).status, 0);
    assert.ok(existsSync(join(dir, 'pr', 'pr-aptpl-1.json')), 'state written next to the config');
    a.close();

    lb.proc.kill('SIGKILL');
    await lb.stop();
    lb = await startLunbox(['--config', cfg, '--control', 'none']);
    try {
      const b = await session(lb.urls[0] ?? '', OTHER);
      const w = await b.command(WRITE10, { dataOut: Buffer.alloc(512, 0xee) });
      assert.is(w.status, 0x18, 'RESERVATION CONFLICT for a non-registrant after the restart');
      const rr = await b.command(READ_RESERVATION, { dataIn: 4096 });
      assert.is(rr.status, 0);
      assert.is(rr.data.readUInt32BE(4), 16, 'one reservation descriptor');
      assert.ok(rr.data.subarray(8, 16).equals(KEY), 'held with the registered key');
      assert.is(rr.data[21]! & 0x0f, 0x01, 'type Write Exclusive');
      b.close();
      a = await session(lb.urls[0] ?? '', HOLDER);
      assert.is((await a.command(WRITE10, { dataOut: Buffer.alloc(512, 0xaa) })).status, 0, 'the holder still writes');
      a.close();
    } finally {
      await lb.stop();
    }
  } finally {
    cleanup();
  }
});

test('a quick export has nowhere to keep APTPL state: REGISTER with APTPL is refused', async () => {
  const lb = await startLunbox(['--listen', '127.0.0.1:0', '--backstore', 'ram:8M', '--iqn', IQN, '--control', 'none']);
  try {
    const a = await session(lb.urls[0] ?? '', HOLDER);
    const reg = prOut(0x00, 0, NONE, KEY, true);
    const r = await a.command(reg.cdb, { dataOut: reg.data });
    assert.is(r.status, 0x02);
    assert.equal(senseKey(r.sense), { key: 0x05, asc: 0x26, ascq: 0x00 });
    const plain = prOut(0x00, 0, NONE, KEY, false);
    assert.is((await a.command(plain.cdb, { dataOut: plain.data })).status, 0, 'REGISTER without APTPL works');
    a.close();
  } finally {
    await lb.stop();
  }
});

test.run();
