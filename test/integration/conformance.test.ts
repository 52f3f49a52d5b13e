// libiscsi's conformance suite (iscsi-test-cu) against lunbox. Counted from the suite's
// own per-test results; a test that printed [SKIPPED] is counted as a skip, not a pass.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTestCu, ROOT, run, startLunbox, tempDir, writeJson } from './helpers';
import type { TestCuResult } from './helpers';

// The families the foundation must pass with zero failures (issue 2).
const FAMILIES = [
  'SCSI.TestUnitReady', 'SCSI.Inquiry', 'SCSI.ReadCapacity10', 'SCSI.ReadCapacity16',
  'SCSI.Read6', 'SCSI.Read10', 'SCSI.Read12', 'SCSI.Read16', 'SCSI.Write10', 'SCSI.Write12', 'SCSI.Write16',
  'SCSI.Verify10', 'SCSI.Verify12', 'SCSI.Verify16', 'SCSI.WriteVerify10', 'SCSI.WriteVerify12', 'SCSI.WriteVerify16',
  'SCSI.WriteSame10', 'SCSI.WriteSame16', 'SCSI.Unmap', 'SCSI.ModeSense6', 'SCSI.ReportSupportedOpcodes',
  'SCSI.PreventAllow', 'SCSI.StartStopUnit', 'SCSI.Reserve6', 'SCSI.NoMedia', 'SCSI.ReadOnly',
  'iSCSI.iSCSIcmdsn', 'iSCSI.iSCSIdatasn', 'iSCSI.iSCSIResiduals', 'iSCSI.iSCSITMF',
];
const OUT = join(ROOT, '.test-out', 'conformance');

async function conformance(label: string, url: string, families: readonly string[]): Promise<TestCuResult[]> {
  const r = await run('iscsi-test-cu', ['--dataloss', '-t', families.join(','), url], { timeoutMs: 900_000 });
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, `${label}.txt`), r.stdout + r.stderr);
  const results = parseTestCu(r.stdout);
  assert.ok(results.length > 0, `iscsi-test-cu ran no test (exit ${r.code}): ${r.stderr.slice(0, 500)}`);
  return results;
}

function assertNoFailures(label: string, results: readonly TestCuResult[], families: readonly string[]): void {
  const suites = new Set(results.map((r) => r.name.split('.')[0]));
  for (const f of families) assert.ok(suites.has(f.split('.')[1]), `${label}: suite ${f} ran`);
  const failed = results.filter((r) => r.outcome === 'failed');
  const passed = results.filter((r) => r.outcome === 'passed').length;
  const skipped = results.filter((r) => r.outcome === 'skipped').length;
  console.log(`  ${label}: ${results.length} tests, ${passed} passed, ${failed.length} failed, ${skipped} skipped`);
  assert.equal(failed.map((f) => f.name), [], `${label}: failing tests (log in .test-out/conformance/${label}.txt)`);
}

for (const kind of ['ram', 'file'] as const) {
  test(`iscsi-test-cu: issue-2 families pass with 0 failures on a ${kind} backstore`, async () => {
    const { dir, cleanup } = tempDir();
    const spec = kind === 'ram' ? 'ram:128M' : `file:${join(dir, 'disk.img')}:128M`;
    const lb = await startLunbox(['--listen', '127.0.0.1:0', '--backstore', spec, '--iqn', `iqn.2026-11.org.lunbox:cu-${kind}`]);
    try {
      const results = await conformance(kind, lb.urls[0] ?? '', FAMILIES);
      assertNoFailures(kind, results, FAMILIES);
    } finally {
      await lb.stop();
      cleanup();
    }
  });
}

test('iscsi-test-cu: UNMAP and WRITE SAME on a thin-provisioned file backstore (hole punching)', async () => {
  const { dir, cleanup } = tempDir();
  const cfg = writeJson(join(dir, 'thin.json'), {
    version: 1,
    backstores: [{ name: 'thin0', type: 'file', path: join(dir, 'thin.img'), size: '64M', thinProvisioning: true }],
    iscsi: { portals: [{ address: '127.0.0.1', port: 0 }], targets: [{ iqn: 'iqn.2026-11.org.lunbox:cu-thin', luns: [{ lun: 0, backstore: 'thin0' }] }] },
  });
  const lb = await startLunbox(['--config', cfg]);
  try {
    const fam = ['SCSI.Unmap', 'SCSI.WriteSame10', 'SCSI.WriteSame16'];
    const results = await conformance('file-thin', lb.urls[0] ?? '', fam);
    assertNoFailures('file-thin', results, fam);
    const unmapSkips = results.filter((r) => r.name.startsWith('Unmap.') && r.outcome === 'skipped');
    assert.equal(unmapSkips.map((r) => r.name), [], 'a thin LUN runs every UNMAP test');
  } finally {
    await lb.stop();
    cleanup();
  }
});

test('iscsi-test-cu: ReadOnly family on a read-only LUN (writes refused with DATA PROTECT)', async () => {
  const lb = await startLunbox(['--listen', '127.0.0.1:0', '--backstore', 'ram:32M', '--read-only', '--iqn', 'iqn.2026-11.org.lunbox:cu-ro']);
  try {
    const fam = ['SCSI.ReadOnly'];
    const results = await conformance('readonly', lb.urls[0] ?? '', fam);
    assertNoFailures('readonly', results, fam);
    // Every write command of issue 2 is tried against the protected LUN; the only parts
    // libiscsi may skip are commands that come with issue 3 (COMPARE AND WRITE, ORWRITE).
    for (const r of results) {
      const notes = r.detail.split('\n').filter((l) => l.includes('[SKIPPED]'));
      for (const n of notes) assert.match(n, /(COMPAREANDWRITE|ORWRITE) is not implemented/, `${r.name}: unexpected skip: ${n}`);
    }
  } finally {
    await lb.stop();
  }
});

test('iscsi-test-cu: removable-medium families on a removable LUN', async () => {
  const { dir, cleanup } = tempDir();
  const cfg = writeJson(join(dir, 'removable.json'), {
    version: 1,
    backstores: [{ name: 'rm0', type: 'ram', size: '32M', removable: true }],
    iscsi: { portals: [{ address: '127.0.0.1', port: 0 }], targets: [{ iqn: 'iqn.2026-11.org.lunbox:cu-rm', luns: [{ lun: 0, backstore: 'rm0' }] }] },
  });
  const lb = await startLunbox(['--config', cfg]);
  try {
    const fam = ['SCSI.PreventAllow', 'SCSI.StartStopUnit', 'SCSI.NoMedia'];
    const results = await conformance('removable', lb.urls[0] ?? '', fam);
    assertNoFailures('removable', results, fam);
  } finally {
    await lb.stop();
    cleanup();
  }
});

test.run();
