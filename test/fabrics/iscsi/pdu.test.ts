import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  PduError,
  decodeBhs,
  decodeLun,
  encodeDataIn,
  encodeLoginResponse,
  encodeLun,
  encodeR2t,
  encodeReject,
  encodeScsiResponse,
  snAdd,
  snLt,
  Opcode,
  RejectReason,
  SnackType,
} from '../../../src/fabrics/iscsi/pdu';
import { randomBytes, rng } from './rng';

/** Hex with spaces/comments stripped, so byte tables can be annotated. */
function hex(s: string): Buffer {
  return Buffer.from(
    s
      .split('\n')
      .map((l) => l.replace(/#.*/, ''))
      .join('')
      .replace(/\s+/g, ''),
    'hex',
  );
}

// RFC 7143 §11.3 SCSI Command: WRITE(10) of 8 blocks with 4096 bytes of immediate data.
const SCSI_CMD = hex(`
  01            # byte 0: opcode 0x01, I=0
  a1            # F=1 R=0 W=1 ATTR=1 (simple)
  00 00         # reserved
  00            # TotalAHSLength
  00 10 00      # DataSegmentLength 4096
  00 03 00 00 00 00 00 00   # LUN 3 (peripheral)
  12 34 56 78   # ITT
  00 00 10 00   # Expected Data Transfer Length 4096
  00 00 00 07   # CmdSN
  00 00 00 02   # ExpStatSN
  2a 00 00 00 00 64 00 00 08 00 00 00 00 00 00 00   # CDB WRITE(10) LBA 100 len 8
`);

test('§11.3 SCSI Command decodes with its flags, LUN and CDB', () => {
  const p = decodeBhs(SCSI_CMD);
  assert.is(p.kind, 'scsi-command');
  if (p.kind !== 'scsi-command') return;
  assert.is(p.immediate, false);
  assert.is(p.final, true);
  assert.is(p.read, false);
  assert.is(p.write, true);
  assert.is(p.attr, 1);
  assert.is(p.lun, 3);
  assert.is(p.itt, 0x12345678);
  assert.is(p.expectedDataTransferLength, 4096);
  assert.is(p.cmdSN, 7);
  assert.is(p.expStatSN, 2);
  assert.is(p.dataSegmentLength, 4096);
  assert.is(p.cdb.length, 16);
  assert.is(p.cdb[0], 0x2a);
});

// RFC 7143 §11.12 Login Request: first request of a normal session.
const LOGIN = hex(`
  43            # I=1, opcode 0x03
  81            # T=1 C=0 CSG=0 NSG=1
  00 00         # Version-max 0, Version-min 0
  00 00 01 00   # TotalAHSLength 0, DataSegmentLength 256
  80 12 34 56 00 00   # ISID (type 2 random)
  00 00         # TSIH 0: new session
  00 00 00 01   # ITT
  00 00 00 00   # CID 0 + reserved
  00 00 00 05   # CmdSN
  00 00 00 00   # ExpStatSN
  00000000 00000000 00000000 00000000   # reserved
`);

test('§11.12 Login Request decodes T/C/CSG/NSG, ISID, TSIH, CID', () => {
  const p = decodeBhs(LOGIN);
  assert.is(p.kind, 'login');
  if (p.kind !== 'login') return;
  assert.is(p.immediate, true);
  assert.is(p.transit, true);
  assert.is(p.continue, false);
  assert.is(p.csg, 0);
  assert.is(p.nsg, 1);
  assert.is(p.isid.toString('hex'), '801234560000');
  assert.is(p.tsih, 0);
  assert.is(p.cid, 0);
  assert.is(p.cmdSN, 5);
  assert.is(p.dataSegmentLength, 256);
});

// RFC 7143 §11.7 Data-Out.
const DATA_OUT = hex(`
  05 80 00 00   # opcode 0x05, F=1
  00 00 02 00   # DSL 512
  00 00 00 00 00 00 00 00   # LUN 0
  00 00 00 09   # ITT
  00 00 00 2a   # TTT
  00 00 00 00   # reserved
  00 00 00 03   # ExpStatSN
  00 00 00 00   # reserved
  00 00 00 01   # DataSN
  00 00 02 00   # BufferOffset 512
  00 00 00 00   # reserved
`);

test('§11.7 Data-Out decodes TTT, DataSN, BufferOffset', () => {
  const p = decodeBhs(DATA_OUT);
  assert.is(p.kind, 'data-out');
  if (p.kind !== 'data-out') return;
  assert.is(p.ttt, 0x2a);
  assert.is(p.dataSN, 1);
  assert.is(p.bufferOffset, 512);
  assert.is(p.final, true);
});

test('§11.5 TMF request decodes function and referenced task tag', () => {
  const b = Buffer.alloc(48);
  b[0] = 0x42; // I + 0x02
  b[1] = 0x81; // F + ABORT TASK
  b.writeUInt32BE(0x77, 16);
  b.writeUInt32BE(0x55, 20);
  b.writeUInt32BE(9, 24);
  b.writeUInt32BE(8, 32);
  const p = decodeBhs(b);
  assert.is(p.kind, 'task-mgmt');
  if (p.kind !== 'task-mgmt') return;
  assert.is(p.function, 1);
  assert.is(p.referencedTaskTag, 0x55);
  assert.is(p.refCmdSN, 8);
  assert.is(p.immediate, true);
});

test('unknown opcode is a typed PduError with Reject reason "command not supported"', () => {
  const b = Buffer.alloc(48);
  b[0] = 0x1f;
  try {
    decodeBhs(b);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, PduError);
    assert.is((e as PduError).code, 'ISCSI_BAD_OPCODE');
    assert.is((e as PduError).reason, RejectReason.COMMAND_NOT_SUPPORTED);
  }
});

test('short BHS is a typed error', () => {
  assert.throws(() => decodeBhs(Buffer.alloc(47)), (e: unknown) => e instanceof PduError && e.code === 'ISCSI_SHORT_BHS');
});

test('§11.7 Data-In with status: F and S set, residual and StatSN present', () => {
  const b = encodeDataIn({ itt: 5, lun: 1, final: true, statusPresent: true, status: 0, overflow: false, underflow: true, residualCount: 100, statSN: 10, expCmdSN: 11, maxCmdSN: 40, dataSN: 2, bufferOffset: 8192, dataSegmentLength: 4096 });
  assert.is(b.length, 48);
  assert.is(b[0], Opcode.DATA_IN);
  assert.is(b[1], 0x80 | 0x02 | 0x01); // F U S
  assert.is(b.readUIntBE(5, 3), 4096);
  assert.is(decodeLun(b, 8), 1);
  assert.is(b.readUInt32BE(20), 0xffffffff); // TTT reserved
  assert.is(b.readUInt32BE(24), 10);
  assert.is(b.readUInt32BE(36), 2);
  assert.is(b.readUInt32BE(40), 8192);
  assert.is(b.readUInt32BE(44), 100);
});

test('§11.7 Data-In without status leaves StatSN and residual zero', () => {
  const b = encodeDataIn({ itt: 5, lun: 0, final: false, statusPresent: false, status: 0, overflow: true, underflow: false, residualCount: 7, statSN: 10, expCmdSN: 11, maxCmdSN: 40, dataSN: 0, bufferOffset: 0, dataSegmentLength: 512 });
  assert.is(b[1], 0);
  assert.is(b.readUInt32BE(24), 0);
  assert.is(b.readUInt32BE(44), 0);
});

test('§11.4 SCSI Response: flags, status, ExpDataSN, residual', () => {
  const b = encodeScsiResponse({ itt: 1, response: 0, status: 2, overflow: true, underflow: false, residualCount: 512, expDataSN: 3, statSN: 4, expCmdSN: 5, maxCmdSN: 6, dataSegmentLength: 20 });
  assert.is(b.toString('hex', 0, 8), '2184000200000014');
  assert.is(b.readUInt32BE(36), 3);
  assert.is(b.readUInt32BE(44), 512);
});

test('§11.16 SNACK decodes Type, ITT, TTT/SNACK Tag, ExpStatSN, BegRun, RunLength', () => {
  // 10 83 | 00 00 | 00 000000 | LUN 0 | ITT 0x11 | TTT 0xabcd | rsvd | ExpStatSN 9 | rsvd | BegRun 4 | RunLength 2
  const b = Buffer.alloc(48);
  b[0] = 0x10;
  b[1] = 0x80 | SnackType.R_DATA;
  b.writeUInt32BE(0x11, 16);
  b.writeUInt32BE(0xabcd, 20);
  b.writeUInt32BE(9, 28);
  b.writeUInt32BE(4, 40);
  b.writeUInt32BE(2, 44);
  const p = decodeBhs(b);
  assert.equal(
    p.kind === 'snack' ? [p.type, p.itt, p.ttt, p.expStatSN, p.begRun, p.runLength] : null,
    [3, 0x11, 0xabcd, 9, 4, 2],
  );
});

test('§11.7.2 Data-In with the A bit carries the TTT for the DataACK', () => {
  const b = encodeDataIn({ itt: 5, lun: 0, final: true, statusPresent: false, status: 0, overflow: false, underflow: false, residualCount: 0, statSN: 0, expCmdSN: 1, maxCmdSN: 2, dataSN: 3, bufferOffset: 0, dataSegmentLength: 512, ack: true, ttt: 0x77 });
  assert.is(b[1], 0x80 | 0x40);
  assert.is(b.readUInt32BE(20), 0x77);
});

test('§11.4 SCSI Response carries the SNACK Tag at bytes 20-23 after an R-Data SNACK', () => {
  const b = encodeScsiResponse({ itt: 1, response: 0, status: 0, overflow: false, underflow: false, residualCount: 0, expDataSN: 3, statSN: 4, expCmdSN: 5, maxCmdSN: 6, dataSegmentLength: 0, snackTag: 0xabcd });
  assert.is(b.readUInt32BE(20), 0xabcd);
  assert.is(encodeScsiResponse({ itt: 1, response: 0, status: 0, overflow: false, underflow: false, residualCount: 0, expDataSN: 3, statSN: 4, expCmdSN: 5, maxCmdSN: 6, dataSegmentLength: 0 }).readUInt32BE(20), 0);
});

test('§11.8 R2T fields', () => {
  const b = encodeR2t({ itt: 1, lun: 2, ttt: 3, r2tSN: 4, bufferOffset: 65536, desiredLength: 262144, statSN: 7, expCmdSN: 8, maxCmdSN: 9 });
  assert.is(b[0], 0x31);
  assert.is(b[1], 0x80);
  assert.is(b.readUInt32BE(20), 3);
  assert.is(b.readUInt32BE(36), 4);
  assert.is(b.readUInt32BE(40), 65536);
  assert.is(b.readUInt32BE(44), 262144);
});

test('§11.13 Login Response carries status class/detail, TSIH and stage bits', () => {
  const b = encodeLoginResponse({ transit: true, continue: false, csg: 1, nsg: 3, versionMax: 0, versionActive: 0, isid: Buffer.from('801234560000', 'hex'), tsih: 0x1234, itt: 9, status: 0x0201, dataSegmentLength: 0, statSN: 1, expCmdSN: 2, maxCmdSN: 3 });
  assert.is(b[0], 0x23);
  assert.is(b[1], 0x87); // T, CSG=1, NSG=3
  assert.is(b.toString('hex', 8, 16), '8012345600001234');
  assert.is(b[36], 0x02);
  assert.is(b[37], 0x01);
});

test('§11.17 Reject: reason, ITT reserved, 48-byte data segment', () => {
  const b = encodeReject({ reason: 9, dataSN: 0, statSN: 1, expCmdSN: 2, maxCmdSN: 3 });
  assert.is(b[0], 0x3f);
  assert.is(b[2], 9);
  assert.is(b.readUIntBE(5, 3), 48);
  assert.is(b.readUInt32BE(16), 0xffffffff);
});

test('LUN encoding: peripheral below 256, flat space above, round trip', () => {
  const b = Buffer.alloc(8);
  for (const lun of [0, 1, 255, 256, 1000, 16383]) {
    encodeLun(lun, b, 0);
    assert.is(decodeLun(b, 0), lun);
  }
  encodeLun(300, b, 0);
  assert.is(b.toString('hex'), '412c000000000000');
});

test('serial number arithmetic wraps (RFC 1982)', () => {
  assert.ok(snLt(0xfffffffe, 1));
  assert.not.ok(snLt(1, 0xfffffffe));
  assert.is(snAdd(0xffffffff, 2), 1);
});

test('fuzz: decodeBhs only returns PDUs or throws PduError (seeded)', () => {
  const next = rng(0x15c5);
  for (let i = 0; i < 20000; i++) {
    const b = randomBytes(next, 48);
    if (i % 2 === 0) b[0] = b[0]! & 0x3f & (next() < 0.5 ? 0x07 : 0x3f);
    try {
      const p = decodeBhs(b);
      assert.type(p.kind, 'string');
    } catch (e) {
      if (!(e instanceof PduError)) throw e;
    }
  }
});

test.run();
