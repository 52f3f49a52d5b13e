// Limits the core advertises (VPD B0 Block Limits) and enforces.

/** SBC-3 §6.6.4 MAXIMUM TRANSFER LENGTH, in bytes' worth of blocks. */
export const MAX_TRANSFER_BYTES = 8 * 1024 * 1024;
/**
 * SBC-3 §6.6.4 MAXIMUM WRITE SAME LENGTH in blocks: LIO's default 65535. libiscsi writes
 * 65536 blocks in one WRITE(16) when this allows WRITE SAME of that many, which our
 * MAXIMUM TRANSFER LENGTH would reject.
 */
export const MAX_WRITE_SAME_BLOCKS = 0xffff;
/** SBC-3 §6.6.4 MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT. */
export const MAX_UNMAP_DESCRIPTORS = 256;
/** Data-out is pulled from the fabric in chunks of at most this many bytes. */
export const PULL_CHUNK = 1024 * 1024;
/** SBC-3 §6.6.4 MAXIMUM UNMAP LBA COUNT (blocks); libiscsi deems more than 1 Mi "insane". */
export const MAX_UNMAP_BLOCKS = 1024 * 1024;
/**
 * SBC-3 §6.6.4 MAXIMUM COMPARE AND WRITE LENGTH (blocks). 1 like LIO and what ESXi's ATS
 * uses; the range lock would allow more (the field is one byte, so at most 255).
 */
export const MAX_COMPARE_AND_WRITE_BLOCKS = 1;
