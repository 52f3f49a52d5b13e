// CHAP (one-way and mutual) and per-initiator ACLs, checked with libiscsi's initiator.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { run, startLunbox, tempDir, writeJson } from './helpers';

const IQN = 'iqn.2026-11.org.lunbox:auth';
const ALLOWED = 'iqn.2026-11.org.lunbox:allowed-initiator';

test('CHAP: a wrong secret is refused, the right one accepted', async () => {
  const { dir, cleanup } = tempDir();
  const cfg = writeJson(join(dir, 'c.json'), {
    version: 1,
    backstores: [{ name: 'r0', type: 'ram', size: '16M' }],
    iscsi: {
      portals: [{ address: '127.0.0.1', port: 0 }],
      targets: [{ iqn: IQN, luns: [{ lun: 0, backstore: 'r0' }], auth: { userid: 'alice', password: 'secret-secret1' } }],
    },
  });
  const lb = await startLunbox(['--config', cfg]);
  try {
    const port = /:(\d+)\//.exec(lb.urls[0] ?? '')?.[1];
    const none = await run('iscsi-inq', [`iscsi://127.0.0.1:${port}/${IQN}/0`]);
    assert.is.not(none.code, 0, 'no credentials: refused');
    const wrong = await run('iscsi-inq', [`iscsi://alice%wrong-secret99@127.0.0.1:${port}/${IQN}/0`]);
    assert.is.not(wrong.code, 0, 'wrong secret: refused');
    const right = await run('iscsi-inq', [`iscsi://alice%secret-secret1@127.0.0.1:${port}/${IQN}/0`]);
    assert.is(right.code, 0, right.stderr);
    assert.match(right.stdout, /Vendor:LUNBOX/);
  } finally {
    await lb.stop();
    cleanup();
  }
});

test('mutual CHAP: the target proves itself; a wrong target secret is detected', async () => {
  const { dir, cleanup } = tempDir();
  const cfg = writeJson(join(dir, 'c.json'), {
    version: 1,
    backstores: [{ name: 'r0', type: 'ram', size: '16M' }],
    iscsi: {
      portals: [{ address: '127.0.0.1', port: 0 }],
      targets: [
        {
          iqn: IQN,
          luns: [{ lun: 0, backstore: 'r0' }],
          auth: { userid: 'alice', password: 'secret-secret1', mutualUserid: 'target1', mutualPassword: 'target-secret2' },
        },
      ],
    },
  });
  const lb = await startLunbox(['--config', cfg]);
  try {
    const port = /:(\d+)\//.exec(lb.urls[0] ?? '')?.[1];
    const url = `iscsi://alice%secret-secret1@127.0.0.1:${port}/${IQN}/0`;
    const ok = await run('iscsi-inq', [url], { env: { LIBISCSI_CHAP_TARGET_USERNAME: 'target1', LIBISCSI_CHAP_TARGET_PASSWORD: 'target-secret2' } });
    assert.is(ok.code, 0, ok.stderr);
    const bad = await run('iscsi-inq', [url], { env: { LIBISCSI_CHAP_TARGET_USERNAME: 'target1', LIBISCSI_CHAP_TARGET_PASSWORD: 'not-the-secret' } });
    assert.is.not(bad.code, 0, 'initiator rejects a target that does not know the mutual secret');
  } finally {
    await lb.stop();
    cleanup();
  }
});

test('ACLs: with demo mode off an initiator not in the ACL sees no LUNs; one in it does', async () => {
  const { dir, cleanup } = tempDir();
  const cfg = writeJson(join(dir, 'c.json'), {
    version: 1,
    backstores: [
      { name: 'r0', type: 'ram', size: '16M' },
      { name: 'r1', type: 'ram', size: '8M' },
    ],
    iscsi: {
      portals: [{ address: '127.0.0.1', port: 0 }],
      targets: [
        {
          iqn: IQN,
          demoMode: false,
          luns: [
            { lun: 0, backstore: 'r0' },
            { lun: 1, backstore: 'r1' },
          ],
          acls: [{ initiator: ALLOWED, luns: [{ lun: 0, targetLun: 1 }] }],
        },
      ],
    },
  });
  const lb = await startLunbox(['--config', cfg], { count: 2 });
  try {
    const port = /:(\d+)\//.exec(lb.urls[0] ?? '')?.[1];
    const stranger = await run('iscsi-ls', ['-s', '-i', 'iqn.2026-11.org.lunbox:stranger', `iscsi://127.0.0.1:${port}`]);
    assert.not.match(stranger.stdout, /Lun:/, 'stranger sees no LUN');
    const strangerInq = await run('iscsi-inq', ['-i', 'iqn.2026-11.org.lunbox:stranger', `iscsi://127.0.0.1:${port}/${IQN}/0`]);
    assert.is.not(strangerInq.code, 0, 'stranger cannot log in');
    const friend = await run('iscsi-ls', ['-s', '-i', ALLOWED, `iscsi://127.0.0.1:${port}`]);
    assert.is(friend.code, 0, friend.stderr);
    // LUN masking: the ACL maps target LUN 1 (8 MiB) as the initiator's LUN 0, and nothing else.
    assert.match(friend.stdout, /Lun:0\s+Type:DIRECT_ACCESS/);
    assert.not.match(friend.stdout, /Lun:1/);
    const cap = await run('iscsi-readcapacity16', ['-i', ALLOWED, `iscsi://127.0.0.1:${port}/${IQN}/0`]);
    assert.is(cap.code, 0, cap.stderr);
    assert.match(cap.stdout, /RETURNED LOGICAL BLOCK ADDRESS:16383/);
  } finally {
    await lb.stop();
    cleanup();
  }
});

test.run();
