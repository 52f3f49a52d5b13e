// targetcli saveconfig.json import/export against samples written in the rtslib-fb dump
// layout (root.py: storage_objects/targets/fabric_modules; tcm.py: storage object dump
// with attributes; target.py: TPG/LUN/NetworkPortal/NodeACL/MappedLUN dumps).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exportSaveconfig, importSaveconfig } from '../../src/config/targetcli';
import type { LunboxConfig } from '../../src/config';

// LIO's dump of every storage object attribute (kernel 6.x, rtslib-fb 2.1).
const soAttrs = (blockSize: number, wce: number, tpu: number) => ({
  alua_support: 1, block_size: blockSize, emulate_3pc: 1, emulate_caw: 1, emulate_dpo: 1, emulate_fua_read: 1,
  emulate_fua_write: 1, emulate_model_alias: 1, emulate_pr: 1, emulate_rest_reord: 0, emulate_tas: 1, emulate_tpu: tpu,
  emulate_tpws: 0, emulate_ua_intlck_ctrl: 0, emulate_write_cache: wce, enforce_pr_isids: 1, force_pr_aptpl: 0,
  is_nonrot: 0, max_unmap_block_desc_count: 1, max_unmap_lba_count: 8192, max_write_same_len: 4096,
  optimal_sectors: 16384, pgr_support: 1, pi_prot_format: 0, pi_prot_type: 0, pi_prot_verify: 0,
  queue_depth: 128, unmap_granularity: 1, unmap_granularity_alignment: 0, unmap_zeroes_data: 0,
});
const tpgAttrs = (generate: number, auth: number) => ({
  authentication: auth, cache_dynamic_acls: generate, default_cmdsn_depth: 64, default_erl: 0, demo_mode_discovery: 1,
  demo_mode_write_protect: generate ? 0 : 1, fabric_prot_type: 0, generate_node_acls: generate, login_keys_workaround: 1,
  login_timeout: 15, netif_timeout: 2, prod_mode_write_protect: 0, t10_pi: 0, tpg_enabled_sendtargets: 1,
});
const tpgParams = (over: Record<string, string> = {}) => ({
  AuthMethod: 'CHAP,None', DataDigest: 'CRC32C,None', DataPDUInOrder: 'Yes', DataSequenceInOrder: 'Yes', DefaultTime2Retain: '20',
  DefaultTime2Wait: '2', ErrorRecoveryLevel: '0', FirstBurstLength: '65536', HeaderDigest: 'CRC32C,None', IFMarkInt: '2048~65535',
  IFMarker: 'No', ImmediateData: 'Yes', InitialR2T: 'Yes', MaxBurstLength: '262144', MaxConnections: '1',
  MaxOutstandingR2T: '1', MaxRecvDataSegmentLength: '8192', MaxXmitDataSegmentLength: '262144', OFMarkInt: '2048~65535',
  OFMarker: 'No', TargetAlias: 'LIO Target', ...over,
});

/** A targetcli saveconfig.json: fileio, block, ramdisk; an ACL target with CHAP and several portals; a demo-mode target. */
const SAMPLE = {
  fabric_modules: [
    { name: 'iscsi', discovery_enable_auth: true, discovery_userid: 'disc', discovery_password: 'discovery-secret', discovery_mutual_userid: '', discovery_mutual_password: '' },
  ],
  storage_objects: [
    {
      aio: false, alua_tpgs: [{ alua_access_state: 0, alua_access_status: 0, alua_access_type: 3, alua_support_active_nonoptimized: 1, alua_support_active_optimized: 1, alua_support_offline: 1, alua_support_standby: 1, alua_support_transitioning: 1, alua_support_unavailable: 1, alua_write_metadata: 0, implicit_trans_secs: 0, name: 'default_tg_pt_gp', nonop_delay_msecs: 100, preferred: 0, tg_pt_gp_id: 0, trans_delay_msecs: 0 }],
      attributes: soAttrs(512, 1, 1), dev: '/var/lib/iscsi/disk1.img', name: 'disk1', plugin: 'fileio', size: 1073741824, write_back: true, wwn: '2f4c1f36-7e0b-4bd5-9c51-1d2f5e6a7b8c',
    },
    { alua_tpgs: [], attributes: soAttrs(4096, 0, 0), dev: '/dev/sdb', name: 'sdb', plugin: 'block', readonly: true, write_back: false, wwn: 'b7a1a6f2-0e5d-4c62-8f2b-3d0e4f5a6b7c' },
    { alua_tpgs: [], attributes: soAttrs(512, 1, 0), name: 'scratch', nullio: false, plugin: 'ramdisk', size: 268435456, wwn: 'c0ffee00-1111-2222-3333-444455556666' },
  ],
  targets: [
    {
      fabric: 'iscsi',
      tpgs: [
        {
          attributes: tpgAttrs(0, 1),
          chap_password: '', chap_userid: '',
          enable: true,
          luns: [
            { alias: '8a4b2c1d0e', alua_tg_pt_gp_name: 'default_tg_pt_gp', index: 0, storage_object: '/backstores/fileio/disk1' },
            { alias: 'f1e2d3c4b5', alua_tg_pt_gp_name: 'default_tg_pt_gp', index: 1, storage_object: '/backstores/block/sdb' },
          ],
          node_acls: [
            {
              attributes: {}, chap_mutual_password: 'target-secret-1', chap_mutual_userid: 'target', chap_password: 'alice-secret-1', chap_userid: 'alice',
              mapped_luns: [
                { alias: 'a1b2c3d4e5', index: 0, tpg_lun: 0, write_protect: false },
                { alias: 'e5d4c3b2a1', index: 1, tpg_lun: 1, write_protect: true },
              ],
              node_wwn: 'iqn.1993-08.org.debian:01:abcdef012345',
            },
            {
              attributes: {}, chap_password: 'bob-secret-12', chap_userid: 'bob',
              mapped_luns: [{ alias: '0a9b8c7d6e', index: 5, tpg_lun: 1, write_protect: false }],
              node_wwn: 'iqn.1991-05.com.microsoft:win-bob',
            },
          ],
          parameters: tpgParams({ AuthMethod: 'CHAP', MaxRecvDataSegmentLength: '262144', TargetAlias: 'first disk' }),
          portals: [
            { ip_address: '0.0.0.0', iser: false, offload: false, port: 3260 },
            { ip_address: '[::0]', iser: false, offload: false, port: 3260 },
            { ip_address: '192.168.7.2', iser: false, offload: false, port: 3261 },
          ],
          tag: 1,
        },
      ],
      wwn: 'iqn.2003-01.org.linux-iscsi.board.armv7l:sn.0123456789ab',
    },
    {
      fabric: 'iscsi',
      tpgs: [
        {
          attributes: tpgAttrs(1, 1),
          chap_password: 'demo-secret-123', chap_userid: 'demo',
          enable: true,
          luns: [{ alias: '1a2b3c4d5e', alua_tg_pt_gp_name: 'default_tg_pt_gp', index: 0, storage_object: '/backstores/ramdisk/scratch' }],
          node_acls: [],
          parameters: tpgParams(),
          portals: [{ ip_address: '0.0.0.0', iser: false, offload: false, port: 3260 }],
          tag: 1,
        },
      ],
      wwn: 'iqn.2003-01.org.linux-iscsi.board.armv7l:sn.scratch',
    },
  ],
};

/** Things lunbox cannot take: they must be listed, not dropped. */
const ODD = {
  storage_objects: [
    { attributes: { block_size: 512 }, dev: '/dev/sg2', name: 'tape', plugin: 'pscsi' },
    { attributes: { block_size: 512 }, name: 'null', nullio: true, plugin: 'ramdisk', size: 1048576 },
    { attributes: { block_size: 512 }, config: 'file//tmp/x', name: 'u', plugin: 'user:file', size: 1048576 },
  ],
  targets: [
    { fabric: 'loopback', tpgs: [{ luns: [{ index: 0, storage_object: '/backstores/ramdisk/null' }], tag: 1, nexus: 'naa.5001405abcdef012' }], wwn: 'naa.50014055e5a1b2c3' },
    { fabric: 'sbp', tpgs: [{ luns: [], tag: 1 }], wwn: '0011223344556677' },
    {
      fabric: 'iscsi',
      tpgs: [
        { attributes: tpgAttrs(1, 0), enable: false, luns: [], node_acls: [], parameters: {}, portals: [], tag: 1 },
        {
          attributes: { ...tpgAttrs(1, 0), login_timeout: 30 },
          enable: true,
          luns: [{ index: 0, storage_object: '/backstores/ramdisk/null' }, { index: 1, storage_object: '/backstores/pscsi/tape' }],
          node_acls: [],
          parameters: tpgParams({ MaxConnections: '4' }),
          portals: [{ ip_address: '10.0.0.1', iser: true, offload: false, port: 3260 }],
          tag: 2,
        },
      ],
      wwn: 'iqn.2026-11.org.example:odd',
    },
    { fabric: 'usb_gadget', tpgs: [{ enable: true, luns: [{ index: 0, storage_object: '/backstores/ramdisk/null' }], nexus: 'naa.6001405aaaabbbbc', tag: 1 }], wwn: 'naa.6001405c0ffee000' },
  ],
};

test('import: storage objects, targets, ACLs with CHAP, mapped LUNs, several portals, discovery auth', () => {
  const { config, unmapped } = importSaveconfig(structuredClone(SAMPLE));
  assert.equal(config.backstores, [
    { name: 'disk1', type: 'file', path: '/var/lib/iscsi/disk1.img', size: 1073741824, writeCache: true, thinProvisioning: true, serial: '2f4c1f36-7e0b-4bd5-9c51-1d2f5e6a7b8c' },
    { name: 'sdb', type: 'block', path: '/dev/sdb', blockSize: 4096, writeCache: false, readOnly: true, serial: 'b7a1a6f2-0e5d-4c62-8f2b-3d0e4f5a6b7c' },
    { name: 'scratch', type: 'ram', size: 268435456, writeCache: true, serial: 'c0ffee00-1111-2222-3333-444455556666' },
  ]);
  assert.equal(config.iscsi!.discoveryAuth, { userid: 'disc', password: 'discovery-secret' });
  const [t1, t2] = config.iscsi!.targets;
  assert.is(t1!.iqn, 'iqn.2003-01.org.linux-iscsi.board.armv7l:sn.0123456789ab');
  assert.is(t1!.alias, 'first disk');
  assert.equal(t1!.portals, [{ address: '0.0.0.0', port: 3260 }, { address: '::0', port: 3260 }, { address: '192.168.7.2', port: 3261 }]);
  assert.equal(t1!.luns, [{ lun: 0, backstore: 'disk1' }, { lun: 1, backstore: 'sdb' }]);
  assert.equal(t1!.acls![0], {
    initiator: 'iqn.1993-08.org.debian:01:abcdef012345',
    auth: { userid: 'alice', password: 'alice-secret-1', mutualUserid: 'target', mutualPassword: 'target-secret-1' },
    luns: [{ lun: 0 }, { lun: 1, readOnly: true }],
  });
  assert.equal(t1!.acls![1]!.luns, [{ lun: 5, targetLun: 1 }]);
  assert.is(t1!.demoMode, undefined, 'ACLs and generate_node_acls=0: the lunbox default');
  assert.equal(t1!.params, { maxRecvDataSegmentLength: 262144, maxBurstLength: 262144, firstBurstLength: 65536, immediateData: true, initialR2T: true, maxOutstandingR2T: 1, headerDigest: ['CRC32C', 'None'], dataDigest: ['CRC32C', 'None'] });
  assert.equal(t2!.auth, { userid: 'demo', password: 'demo-secret-123' });
  assert.is(t2!.acls, undefined);
  // Everything lunbox does not carry is listed (LIO-only storage attributes here).
  assert.ok(unmapped.some((u) => /disk1: attributes lunbox sets itself.*emulate_3pc=1/.test(u)));
  assert.not.ok(unmapped.some((u) => /default_tg_pt_gp/.test(u)), 'the default ALUA group is not noise');
  assert.not.ok(unmapped.some((u) => /MaxConnections|AuthMethod/.test(u)), 'LIO defaults are not noise');
});

test('import lists what cannot be mapped, never drops it silently', () => {
  const { config, unmapped } = importSaveconfig(structuredClone(ODD));
  const text = unmapped.join('\n');
  for (const re of [
    /storage_objects pscsi\/tape: plugin 'pscsi' has no lunbox backstore/,
    /storage_objects user:file\/u: plugin 'user:file'/,
    /ramdisk\/null: nullio/,
    /targets loopback\/naa\.50014055e5a1b2c3: lunbox has no 'loopback' fabric/,
    /targets sbp\/0011223344556677: the SBP-2 \(FireWire\) target is not built yet/,
    /odd tpg 1: disabled in LIO/,
    /odd tpg 2: LUN 1 -> \/backstores\/pscsi\/tape: its storage object was not imported/,
    /odd tpg 2: portal 10\.0\.0\.1:3260 iser=true/,
    /odd tpg 2: attributes not imported: login_timeout=30/,
    /odd tpg 2: parameters lunbox negotiates itself, not imported: MaxConnections=4/,
    /usb_gadget\/naa\.6001405c0ffee000: nexus/,
  ]) {
    assert.match(text, re);
  }
  assert.equal(config.backstores.map((b) => b.name), ['null']);
  assert.equal(config.iscsi!.targets.map((t) => t.tpgt), [2]);
  assert.equal(config.usb, { luns: [{ lun: 0, backstore: 'null' }] });
});

test('export writes the rtslib dump layout; import(export) gives the config back', () => {
  const cfg = importSaveconfig(structuredClone(SAMPLE)).config;
  const { saveconfig, unmapped } = exportSaveconfig(cfg);
  const so = saveconfig['storage_objects'] as Record<string, unknown>[];
  assert.equal(so.map((s) => [s['plugin'], s['name']]), [['fileio', 'disk1'], ['block', 'sdb'], ['ramdisk', 'scratch']]);
  assert.is(so[0]!['dev'], '/var/lib/iscsi/disk1.img');
  assert.is(so[0]!['size'], 1073741824);
  assert.is(so[1]!['readonly'], true);
  assert.equal(saveconfig['fabric_modules'], [{ name: 'iscsi', discovery_enable_auth: true, discovery_userid: 'disc', discovery_password: 'discovery-secret' }]);
  const targets = saveconfig['targets'] as { wwn: string; fabric: string; tpgs: Record<string, unknown>[] }[];
  const tpg = targets[0]!.tpgs[0]!;
  assert.equal(tpg['portals'], SAMPLE.targets[0]!.tpgs[0]!.portals.map((p) => ({ ...p, ip_address: p.ip_address === '[::0]' ? '[::0]' : p.ip_address })));
  assert.equal(tpg['luns'], [{ index: 0, storage_object: '/backstores/fileio/disk1' }, { index: 1, storage_object: '/backstores/block/sdb' }]);
  const acl0 = (tpg['node_acls'] as Record<string, unknown>[])[0]!;
  assert.is(acl0['chap_password'], 'alice-secret-1');
  assert.is(acl0['chap_mutual_userid'], 'target');
  // sdb is a read-only backstore: every mapped LUN onto it is write-protected.
  assert.equal(acl0['mapped_luns'], [{ index: 0, tpg_lun: 0, write_protect: false }, { index: 1, tpg_lun: 1, write_protect: true }]);
  assert.equal((tpg['attributes'] as Record<string, number>)['generate_node_acls'], 0);
  assert.equal((targets[1]!.tpgs[0]!['attributes'] as Record<string, number>)['generate_node_acls'], 1);
  assert.is((tpg['parameters'] as Record<string, string>)['HeaderDigest'], 'CRC32C,None');
  assert.is((tpg['parameters'] as Record<string, string>)['TargetAlias'], 'first disk');
  assert.equal(unmapped, []);
  // And back: the same lunbox config.
  const again = importSaveconfig(JSON.parse(JSON.stringify(saveconfig))).config;
  assert.equal(again, cfg);
});

test('a lunbox config survives export then import; lunbox-only settings are listed', () => {
  const cfg: LunboxConfig = {
    version: 1,
    backstores: [
      { name: 'img', type: 'file', path: '/srv/img', size: '1G', blockSize: 2048, thinProvisioning: true, vendor: 'ACME' },
      { name: 'mem', type: 'ram', size: 67108864 },
    ],
    iscsi: {
      portals: [{ address: '0.0.0.0', port: 3260 }],
      targets: [
        { iqn: 'iqn.2026-11.org.lunbox:a', luns: [{ lun: 0, backstore: 'img' }, { lun: 3, backstore: 'mem' }], acls: [{ initiator: 'iqn.2026-11.org.example:host', auth: { userid: 'u', password: 'a-long-secret' } }], params: { nopInInterval: 5 } },
        { iqn: 'iqn.2026-11.org.lunbox:a', tpgt: 2, luns: [{ lun: 0, backstore: 'mem' }], portals: [{ address: '::1', port: 3262 }] },
      ],
    },
    console: { device: '/dev/ttyGS0' },
  };
  const { saveconfig, unmapped } = exportSaveconfig(cfg);
  const targets = saveconfig['targets'] as { tpgs: unknown[] }[];
  assert.is(targets.length, 1, 'two TPGs of one target');
  assert.is(targets[0]!.tpgs.length, 2);
  const text = unmapped.join('\n');
  assert.match(text, /vendor "ACME"/);
  assert.match(text, /nopInInterval=5/);
  assert.match(text, /console: lunbox-only/);
  assert.match(text, /iscsi.portals: LIO has no global portals/);
  const back = importSaveconfig(saveconfig).config;
  // writeCache comes back explicit: LIO's fileio default is write-through, so export writes lunbox's default out.
  assert.equal(back.backstores[0], { name: 'img', type: 'file', path: '/srv/img', size: 1073741824, blockSize: 2048, writeCache: true, thinProvisioning: true });
  const a = back.iscsi!.targets[0]!;
  assert.equal(a.portals, [{ address: '0.0.0.0', port: 3260 }]);
  assert.equal(a.acls, [{ initiator: 'iqn.2026-11.org.example:host', auth: { userid: 'u', password: 'a-long-secret' }, luns: [{ lun: 0 }, { lun: 3 }] }]);
  assert.equal(back.iscsi!.targets[1]!.portals, [{ address: '::1', port: 3262 }]);
  assert.is(back.iscsi!.targets[1]!.tpgt, 2);
});

test('not a saveconfig: a clear error', () => {
  assert.throws(() => importSaveconfig([]), /not a saveconfig\.json/);
});

test.run();
