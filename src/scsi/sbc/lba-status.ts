// GET LBA STATUS (SBC-3 §5.6), SERVICE ACTION IN(16) service action 12h.
//
// CDB: 2..9 STARTING LOGICAL BLOCK ADDRESS, 10..13 ALLOCATION LENGTH.
// Parameter data: 0..3 PARAMETER DATA LENGTH (n - 3), 4..7 reserved, then 16-byte LBA
//   status descriptors: 0..7 LBA, 8..11 NUMBER OF LOGICAL BLOCKS, 12 PROVISIONING
//   STATUS(3:0) (0 mapped, 1 deallocated, 2 anchored), 13..15 reserved.
//
// Extents come from Backstore.mapping(): the RAM store answers at its chunk size, a file
// store reports everything mapped (a block that cannot be shown deallocated is mapped).

import type { Handler } from '../command';
import { guarded } from './io';
import { lbaOutOfRange } from '../sense';

export const ProvisioningStatus = { MAPPED: 0, DEALLOCATED: 1, ANCHORED: 2 } as const;

const HEADER = 8;
const DESCRIPTOR = 16;
/** Descriptors per answer, whatever the allocation length: bounds the work per command. */
const MAX_DESCRIPTORS = 1024;

export const getLbaStatus: Handler = (ctx) =>
  guarded(ctx, async () => {
    const cdb = ctx.cmd.cdb;
    const start = cdb.readBigUInt64BE(2);
    const alloc = cdb.readUInt32BE(10);
    const count = BigInt(ctx.lu.blockCount);
    // SBC-3 §5.6: a starting LBA past the last one is LOGICAL BLOCK ADDRESS OUT OF RANGE.
    if (start >= count) return ctx.fail(lbaOutOfRange);
    const bsz = ctx.lu.blockSize;
    // At least one descriptor, even when the allocation length truncates it.
    const want = Math.min(MAX_DESCRIPTORS, Math.max(1, Math.floor((alloc - HEADER) / DESCRIPTOR)));
    const descriptors: Buffer[] = [];
    let lba = Number(start);
    const last = Number(count);
    while (lba < last && descriptors.length < want) {
      const m = await ctx.lu.backstore.mapping(lba * bsz, (last - lba) * bsz);
      // Round to whole blocks; a backstore never answers less than one block.
      const n = Math.min(0xffffffff, Math.max(1, Math.floor(m.length / bsz)));
      const d = Buffer.alloc(DESCRIPTOR);
      d.writeBigUInt64BE(BigInt(lba), 0);
      d.writeUInt32BE(n, 8);
      d[12] = m.mapped ? ProvisioningStatus.MAPPED : ProvisioningStatus.DEALLOCATED;
      descriptors.push(d);
      lba += n;
    }
    const out = Buffer.concat([Buffer.alloc(HEADER), ...descriptors]);
    out.writeUInt32BE(out.length - 4, 0);
    return ctx.good(out, alloc);
  });
