// A tiny ScsiPort over RAM for the USB fabric tests: INQUIRY, TEST UNIT READY, REQUEST SENSE,
// READ(10), WRITE(10); anything else is CHECK CONDITION / INVALID COMMAND OPERATION CODE.
// Like the real core it keeps no sense for REQUEST SENSE (autosense model) and pulls at most
// dataOutLength bytes of data-out, in pieces of at most `pullChunk`.

import type { Nexus, ScsiCommand, ScsiPort, ScsiResult, TmfRequest, TmfResponse } from '../../../src/scsi/types';
import { Status } from '../../../src/scsi/types';

export const BLOCK = 512;

export function fixedSense(key: number, asc: number, ascq = 0): Buffer {
  const s = Buffer.alloc(18);
  s[0] = 0x70; // current, fixed format (SPC-4 §4.5.3)
  s[2] = key;
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}

const check = (key: number, asc: number, extra: Partial<ScsiResult> = {}): ScsiResult => ({
  status: Status.CHECK_CONDITION,
  sense: fixedSense(key, asc),
  ...extra,
});

export interface ExecutedCommand {
  readonly lun: number;
  readonly opcode: number;
  readonly tag: number;
  readonly attribute: string;
  readonly dataInLength: number;
  readonly dataOutLength: number;
  readonly pulls: number[];
}

export class FakePort implements ScsiPort {
  readonly disks: Buffer[];
  readonly executed: ExecutedCommand[] = [];
  readonly tmfs: TmfRequest[] = [];
  readonly lost: Nexus[] = [];
  /** Opcodes whose execution waits for `release()` (a command the host may time out). */
  readonly holdOpcodes = new Set<number>();
  /** Opcodes that make execute() throw (a core bug). */
  readonly throwOpcodes = new Set<number>();
  private holds: (() => void)[] = [];

  constructor(
    blocksPerLun: number,
    lunCount = 1,
    private readonly pullChunk = 64 * 1024,
  ) {
    this.disks = Array.from({ length: lunCount }, () => Buffer.alloc(blocksPerLun * BLOCK));
  }

  release(): void {
    const h = this.holds;
    this.holds = [];
    for (const f of h) f();
  }

  async execute(cmd: ScsiCommand): Promise<ScsiResult> {
    const op = cmd.cdb[0] ?? 0;
    const rec: ExecutedCommand = {
      lun: cmd.lun,
      opcode: op,
      tag: cmd.tag,
      attribute: cmd.attribute,
      dataInLength: cmd.dataInLength,
      dataOutLength: cmd.dataOutLength,
      pulls: [],
    };
    this.executed.push(rec);
    if (this.throwOpcodes.has(op)) throw new Error(`fake core bug on opcode 0x${op.toString(16)}`);
    if (this.holdOpcodes.has(op)) await new Promise<void>((r) => this.holds.push(r));
    if (cmd.aborted) return { status: Status.TASK_ABORTED };
    const disk = this.disks[cmd.lun];
    if (!disk) return check(0x05, 0x25); // LOGICAL UNIT NOT SUPPORTED
    switch (op) {
      case 0x00: // TEST UNIT READY
        return { status: Status.GOOD };
      case 0x03: {
        // REQUEST SENSE with nothing pending: NO SENSE.
        const alloc = cmd.cdb[4] ?? 0;
        return { status: Status.GOOD, dataIn: fixedSense(0, 0).subarray(0, alloc) };
      }
      case 0x12: {
        // INQUIRY: 36 bytes of standard data, cut to ALLOCATION LENGTH.
        const alloc = cmd.cdb.readUInt16BE(3);
        const d = Buffer.alloc(36, 0x20);
        d[0] = 0x00;
        d[1] = 0x80; // RMB
        d[2] = 0x06;
        d[3] = 0x02;
        d[4] = 31;
        d[5] = d[6] = d[7] = 0;
        d.write('LUNBOX', 8, 'ascii');
        d.write(`FAKE LUN ${cmd.lun}`, 16, 'ascii');
        return { status: Status.GOOD, dataIn: d.subarray(0, Math.min(alloc, 36)) };
      }
      case 0x28: {
        // READ(10)
        const lba = cmd.cdb.readUInt32BE(2);
        const blocks = cmd.cdb.readUInt16BE(7);
        if ((lba + blocks) * BLOCK > disk.length) return check(0x05, 0x21); // LBA OUT OF RANGE
        return { status: Status.GOOD, dataIn: disk.subarray(lba * BLOCK, (lba + blocks) * BLOCK) };
      }
      case 0x2a: {
        // WRITE(10): pull whole blocks, at most what the transport says is coming.
        const lba = cmd.cdb.readUInt32BE(2);
        const blocks = cmd.cdb.readUInt16BE(7);
        if ((lba + blocks) * BLOCK > disk.length) return check(0x05, 0x21);
        const expected = blocks * BLOCK;
        const available = Math.min(expected, cmd.dataOutLength);
        let off = 0;
        while (available - off >= BLOCK) {
          const want = Math.min(this.pullChunk, Math.floor((available - off) / BLOCK) * BLOCK);
          rec.pulls.push(want);
          const got = await cmd.dataOut(want);
          const whole = Math.floor(got.length / BLOCK) * BLOCK;
          got.copy(disk, lba * BLOCK + off, 0, whole);
          off += whole;
          if (got.length < want) break;
        }
        return { status: Status.GOOD, dataOutExpected: expected };
      }
      default:
        return check(0x05, 0x20); // INVALID COMMAND OPERATION CODE
    }
  }

  async taskManagement(req: TmfRequest): Promise<TmfResponse> {
    this.tmfs.push(req);
    this.release();
    return 'function-complete';
  }

  nexusLost(nexus: Nexus): void {
    this.lost.push(nexus);
  }
}

export const cdb = {
  tur: (): Buffer => Buffer.alloc(6),
  requestSense: (alloc = 18): Buffer => Buffer.from([0x03, 0, 0, 0, alloc, 0]),
  inquiry: (alloc = 36): Buffer => Buffer.from([0x12, 0, 0, alloc >> 8, alloc & 0xff, 0]),
  read10: (lba: number, blocks: number): Buffer => {
    const b = Buffer.alloc(10);
    b[0] = 0x28;
    b.writeUInt32BE(lba, 2);
    b.writeUInt16BE(blocks, 7);
    return b;
  },
  write10: (lba: number, blocks: number): Buffer => {
    const b = Buffer.alloc(10);
    b[0] = 0x2a;
    b.writeUInt32BE(lba, 2);
    b.writeUInt16BE(blocks, 7);
    return b;
  },
};
