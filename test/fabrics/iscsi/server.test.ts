// IscsiServer portals at run time: one closed while another keeps serving, one added. Real
// loopback TCP (ports 3410-3412) with the test initiator.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tcp } from '../../integration/helpers';
import { IscsiServer } from '../../../src/fabrics/iscsi/index';
import type { TextPair } from '../../../src/fabrics/iscsi/text';
import type { ScsiPort } from '../../../src/scsi/types';
import { Ini } from './initiator';

const IQN = 'iqn.2026-11.org.lunbox:portals';
const INI = 'iqn.1994-05.com.example:portals';
const port: ScsiPort = {
  execute: async () => ({ status: 0 }),
  taskManagement: async () => 'function-complete',
  nexusLost: () => undefined,
};
const LOGIN: TextPair[] = [
  ['InitiatorName', INI],
  ['TargetName', IQN],
];


/** TEST UNIT READY on a logged-in connection; resolves with the SCSI status. */
async function tur(c: Ini, itt: number): Promise<number> {
  c.scsi(itt, [0, 0, 0, 0, 0, 0], 0, 0);
  const r = await c.next();
  assert.is(r.bhs[0]! & 0x3f, 0x21, 'SCSI Response');
  return r.bhs[3]!;
}

test('closePortal: new connections refused at once, logins in progress dropped, logged-in sessions kept; other portals serve; a portal added later serves', async () => {
  const server = new IscsiServer({
    targets: [{ iqn: IQN, tpgt: 1, portals: [{ address: '127.0.0.1', port: 3410 }, { address: '127.0.0.1', port: 3411 }], demoMode: true, acls: [], relativePortId: 1, port, params: { nopInInterval: 0 } }],
  });
  try {
    await server.listen('127.0.0.1', 3410);
    await server.listen('127.0.0.1', 3411);
    const held = await Ini.open(3411);
    assert.is((await held.login(LOGIN)).pdu.bhs.readUInt16BE(36), 0, 'logged in through 3411');
    assert.is(await tur(held, 1), 0);
    // A connection still in the login phase on the portal that goes away.
    const pending = await Ini.open(3411);

    assert.ok(server.closePortal('127.0.0.1', 3411));
    assert.is(await tcp(3411), 'refused', 'a new TCP connection to the closed portal is refused');
    assert.is(await pending.recv(2000), null);
    assert.ok(pending.closed, 'the login in progress on it was dropped');
    assert.is(await tur(held, 2), 0, 'the session logged in through it carries on');
    assert.is(server.sessions().length, 1);

    // The other portal still takes logins.
    const other = await Ini.open(3410);
    assert.is((await other.login(LOGIN, { isid: '400000000002' })).pdu.bhs.readUInt16BE(36), 0);
    assert.is(await tur(other, 1), 0);
    assert.not.ok(server.closePortal('127.0.0.1', 3499), 'no such portal');

    // Added again at run time: it serves.
    await server.listen('127.0.0.1', 3412);
    const late = await Ini.open(3412);
    assert.is((await late.login(LOGIN, { isid: '400000000003' })).pdu.bhs.readUInt16BE(36), 0);
    assert.is(await tur(late, 1), 0);
    for (const c of [held, other, late]) c.kill();
  } finally {
    await server.close();
  }
  assert.is(await tcp(3410), 'refused', 'close() closes the rest');
});

test.run();
