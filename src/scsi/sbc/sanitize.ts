// SANITIZE (SBC-3 §5.30, §4.11): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE. CRYPTOGRAPHIC
// ERASE is not offered (no encryption at rest): it is absent from the command table, so
// it is INVALID FIELD IN CDB, absent from REPORT SUPPORTED OPERATION CODES, and VPD B1
// WACEREQ is 0.
//
// CDB: 1 IMMED(7) AUSE(5) SERVICE ACTION(4:0), 2..6 reserved, 7..8 PARAMETER LIST LENGTH.
// OVERWRITE parameter list (§5.30.2.3): 0 INVERT(7) TEST(6:5) OVERWRITE COUNT(4:0),
//   1 reserved, 2..3 INITIALIZATION PATTERN LENGTH, 4.. INITIALIZATION PATTERN.
//
// The operation belongs to the unit, not to the task (§4.11.2): aborting the command or
// resetting the unit does not stop it. While it runs every command but INQUIRY, REPORT
// LUNS and REQUEST SENSE ends NOT READY, SANITIZE IN PROGRESS with a progress indication.
// If it fails, medium access ends MEDIUM ERROR, SANITIZE COMMAND FAILED until a sanitize
// succeeds or EXIT FAILURE MODE (allowed when the failed one had AUSE=1).
//
// It is paced at `sanitizeRate` bytes per second so that erasing a large unit does not
// starve the other units of a small board's storage and event loop.

import type { ScsiResult } from '../types';
import { Asc, SenseKey, illegal, invalidCdb, invalidParam, type SenseSpec } from '../sense';
import type { CommandContext, CommandDef, Handler } from '../command';
import type { LogicalUnit, UnitCondition } from '../logical-unit';
import { Op } from '../cdb';
import { PULL_CHUNK } from '../limits';
import { rangeLockOf } from './range-lock';
import { goodOut, guarded } from './io';
import { resetPi } from './pi';

export const SanitizeAction = {
  OVERWRITE: 0x01,
  BLOCK_ERASE: 0x02,
  CRYPTOGRAPHIC_ERASE: 0x03,
  EXIT_FAILURE_MODE: 0x1f,
} as const;

const IMMED = 0x80;
const AUSE = 0x20;
const POLL_MS = 100;

export interface OverwriteParams {
  readonly invert: boolean;
  readonly count: number;
  readonly pattern: Buffer;
}

/** Decode an OVERWRITE parameter list; a SenseSpec when a field is bad (SBC-3 §5.30.2.3). */
export function decodeOverwrite(data: Buffer, blockSize: number): OverwriteParams | SenseSpec {
  const b0 = data[0] ?? 0;
  if ((b0 & 0x60) !== 0) return invalidParam(0, 6); // TEST: vendor specific test modes
  const count = b0 & 0x1f;
  if (count === 0) return invalidParam(0, 4);
  const len = data.readUInt16BE(2);
  if (len === 0 || len > blockSize) return invalidParam(2);
  if (4 + len > data.length) return illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  return { invert: (b0 & 0x80) !== 0, count, pattern: Buffer.from(data.subarray(4, 4 + len)) };
}

/** One logical block filled with `pattern` repeated (inverted when `invert`). */
export function patternBlock(pattern: Buffer, blockSize: number, invert: boolean): Buffer {
  const b = Buffer.alloc(blockSize, pattern);
  if (invert) for (let i = 0; i < b.length; i++) b[i] = ~(b[i] ?? 0) & 0xff;
  return b;
}

class Operation implements UnitCondition {
  /** Bytes done and to do, over all passes. */
  done = 0;
  total = 1;
  state: 'running' | 'failed' = 'running';
  readonly finished: Promise<boolean>;
  private resolve!: (ok: boolean) => void;

  constructor(readonly ause: boolean) {
    this.finished = new Promise<boolean>((r) => (this.resolve = r));
  }

  private inProgress(): SenseSpec {
    return {
      key: SenseKey.NOT_READY,
      asc: Asc.LUN_NOT_READY_SANITIZE_IN_PROGRESS,
      progress: Math.floor((this.done / this.total) * 0x10000),
    };
  }

  gate(def: CommandDef | undefined): SenseSpec | undefined {
    if (this.state === 'running') return def?.uaExempt === true ? undefined : this.inProgress();
    // SBC-3 §4.11.3 sanitize failure mode: medium access fails, SANITIZE may run again.
    if (def?.opcode === Op.SANITIZE || def?.medium !== true) return undefined;
    return { key: SenseKey.MEDIUM_ERROR, asc: Asc.SANITIZE_COMMAND_FAILED };
  }

  requestSense(): SenseSpec | undefined {
    return this.state === 'running' ? this.inProgress() : undefined;
  }

  end(ok: boolean): void {
    this.resolve(ok);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Run the erase in steps of PULL_CHUNK, paced at lu.options.sanitizeRate. */
async function run(lu: LogicalUnit, op: Operation, step: (position: number, length: number, pass: number) => Promise<void>, passes: number): Promise<void> {
  const size = lu.blockCount * lu.blockSize;
  const chunk = Math.max(lu.blockSize, Math.floor(PULL_CHUNK / lu.blockSize) * lu.blockSize);
  const rate = Math.max(1, lu.options.sanitizeRate);
  op.total = Math.max(1, size * passes);
  const started = Date.now();
  for (let pass = 0; pass < passes; pass++) {
    for (let pos = 0; pos < size; pos += chunk) {
      const n = Math.min(chunk, size - pos);
      const release = await rangeLockOf(lu).acquire(pos, n);
      try {
        await step(pos, n, pass);
      } finally {
        release();
      }
      op.done += n;
      const ahead = (op.done / rate) * 1000 - (Date.now() - started);
      if (ahead > 1) await sleep(ahead);
    }
  }
  if (lu.protectionType !== 0 && lu.backstore.pi) await resetPi(lu.backstore, 0n, lu.blockCount);
  await lu.backstore.flush();
}

function start(ctx: CommandContext, op: Operation, body: () => Promise<void>): void {
  const lu = ctx.lu;
  lu.condition = op;
  body().then(
    () => {
      if (lu.condition === op) lu.condition = undefined;
      op.end(true);
    },
    (e: unknown) => {
      process.stderr.write(`lunbox scsi: ${lu.name}: sanitize failed: ${e instanceof Error ? e.message : String(e)}\n`);
      op.state = 'failed';
      op.end(false);
    },
  );
}

/** Wait for the operation unless IMMED; a task abort ends the wait, never the operation. */
async function answer(ctx: CommandContext, op: Operation, immed: boolean, paramLen: number): Promise<ScsiResult> {
  if (immed) return goodOut(paramLen);
  let ok: boolean | undefined;
  void op.finished.then((v) => (ok = v));
  while (ok === undefined && !ctx.aborted) await Promise.race([op.finished, sleep(POLL_MS)]);
  if (ok === false) return { ...ctx.fail({ key: SenseKey.MEDIUM_ERROR, asc: Asc.SANITIZE_COMMAND_FAILED }), dataOutExpected: paramLen };
  return goodOut(paramLen);
}

function cdbFields(ctx: CommandContext): { immed: boolean; ause: boolean; paramLen: number } {
  const cdb = ctx.cmd.cdb;
  return { immed: ((cdb[1] ?? 0) & IMMED) !== 0, ause: ((cdb[1] ?? 0) & AUSE) !== 0, paramLen: cdb.readUInt16BE(7) };
}

const overwrite: Handler = (ctx) =>
  guarded(ctx, async () => {
    const { immed, ause, paramLen } = cdbFields(ctx);
    const bsz = ctx.lu.blockSize;
    // SBC-3 §5.30.2.3: PARAMETER LIST LENGTH from 5 to block length + 4.
    if (paramLen < 5 || paramLen > bsz + 4) return { ...ctx.fail(invalidCdb(7)), dataOutExpected: paramLen };
    const data = await ctx.pull(Math.min(paramLen, ctx.cmd.dataOutLength));
    if (data.length < 4) return { ...ctx.fail(illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)), dataOutExpected: paramLen };
    const p = decodeOverwrite(data, bsz);
    if ('key' in p) return { ...ctx.fail(p), dataOutExpected: paramLen };
    const lu = ctx.lu;
    const op = new Operation(ause);
    const blocks = [patternBlock(p.pattern, bsz, false), patternBlock(p.pattern, bsz, true)];
    const fill = Buffer.allocUnsafe(Math.floor(PULL_CHUNK / bsz) * bsz);
    let filledWith = -1;
    start(ctx, op, () =>
      run(
        lu,
        op,
        async (pos, n, pass) => {
          // INVERT: the pattern is inverted between consecutive passes.
          const which = p.invert ? pass % 2 : 0;
          if (filledWith !== which) {
            fill.fill(blocks[which]!);
            filledWith = which;
          }
          await lu.backstore.write(fill.subarray(0, n), pos);
        },
        p.count,
      ),
    );
    return answer(ctx, op, immed, paramLen);
  });

const blockErase: Handler = (ctx) =>
  guarded(ctx, async () => {
    const { immed, ause, paramLen } = cdbFields(ctx);
    if (paramLen !== 0) return { ...ctx.fail(invalidCdb(7)), dataOutExpected: paramLen };
    const lu = ctx.lu;
    const op = new Operation(ause);
    // Only offered on thin units (the table's `supported`): the blocks are deallocated, and
    // read back as zeros (LBPRZ) — VPD B1 WABEREQ 01b.
    start(ctx, op, () => run(lu, op, (pos, n) => lu.backstore.unmap(pos, n), 1));
    return answer(ctx, op, immed, 0);
  });

const exitFailureMode: Handler = (ctx) => {
  const { paramLen } = cdbFields(ctx);
  if (paramLen !== 0) return { ...ctx.fail(invalidCdb(7)), dataOutExpected: paramLen };
  const c = ctx.lu.condition;
  if (c instanceof Operation && c.state === 'failed') {
    // SBC-3 §5.30.2.2: not allowed when the failed sanitize had AUSE=0.
    if (!c.ause) return ctx.fail(invalidCdb(1, 4));
    ctx.lu.condition = undefined;
  }
  return goodOut(0);
};

/** [name, service action, handler, supported] rows for commands.ts. */
export const SANITIZE_ACTIONS: readonly (readonly [string, number, Handler, ((lu: LogicalUnit) => boolean) | undefined])[] = [
  ['OVERWRITE', SanitizeAction.OVERWRITE, overwrite, undefined],
  ['BLOCK ERASE', SanitizeAction.BLOCK_ERASE, blockErase, (lu) => lu.thin],
  ['EXIT FAILURE MODE', SanitizeAction.EXIT_FAILURE_MODE, exitFailureMode, undefined],
];
