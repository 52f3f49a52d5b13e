// Block-device backstore. The size comes from sysfs (/sys/dev/block/MAJ:MIN/size, in
// 512-byte sectors whatever the device's block size), not from an ioctl, which Node lacks.
// The device is opened O_EXCL so a mounted or otherwise claimed device is refused.
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import { BackstoreError } from './backstore';
import { FdBackstore, openError } from './fd-backstore';
import type { FuaMode } from './fd-backstore';

export interface BlockOptions {
  readonly name: string;
  readonly path: string;
  readonly readOnly?: boolean;
  /** Where sysfs is mounted; tests point this at a fake tree. Default '/sys'. */
  readonly sysfsRoot?: string;
  /** Open with O_EXCL (refuse a mounted device). Default true. */
  readonly exclusive?: boolean;
  readonly fua?: FuaMode;
}

export interface BlockSysfsInfo {
  readonly size: number;
  readonly readOnly: boolean;
}

/** glibc gnu_dev_major/minor for a 64-bit dev_t (Linux new_encode_dev layout). */
export function decodeRdev(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/** Size and ro flag of MAJ:MIN from `<sysfsRoot>/dev/block/MAJ:MIN/{size,ro}`. */
export async function readBlockSysfs(sysfsRoot: string, major: number, minor: number, label = `${major}:${minor}`): Promise<BlockSysfsInfo> {
  const dir = nodePath.join(sysfsRoot, 'dev', 'block', `${major}:${minor}`);
  let sizeText: string;
  try {
    sizeText = await fsp.readFile(nodePath.join(dir, 'size'), 'utf8');
  } catch (err) {
    throw new BackstoreError('EIO', `block device ${label}: cannot read ${nodePath.join(dir, 'size')}: ${(err as Error).message}`);
  }
  if (!/^\d+\s*$/.test(sizeText)) {
    throw new BackstoreError('EIO', `block device ${label}: ${nodePath.join(dir, 'size')} holds ${JSON.stringify(sizeText.trim())}, not a sector count`);
  }
  // sysfs 'size' is always in 512-byte units (block/genhd.c), whatever the logical block size.
  const size = Number(sizeText.trim()) * 512;
  if (!Number.isSafeInteger(size)) throw new BackstoreError('ESIZE', `block device ${label}: size ${sizeText.trim()} sectors is too large`);
  let readOnly = false;
  try {
    readOnly = (await fsp.readFile(nodePath.join(dir, 'ro'), 'utf8')).trim() === '1';
  } catch {
    // Older or stripped-down sysfs without 'ro': writable unless the open says otherwise.
  }
  return { size, readOnly };
}

export class BlockBackstore extends FdBackstore {
  async resize(_size: number): Promise<void> {
    throw new BackstoreError('EINVAL', `block backstore ${this.name} (${this.path}): a block device cannot be resized`);
  }
}

export async function openBlock(opts: BlockOptions): Promise<BlockBackstore> {
  const { name } = opts;
  const path = nodePath.resolve(opts.path);
  let st: Awaited<ReturnType<typeof fsp.stat>> & { rdev: bigint };
  try {
    st = (await fsp.stat(path, { bigint: true })) as typeof st;
  } catch (err) {
    throw openError(err, 'block', name, path);
  }
  if (!st.isBlockDevice()) {
    throw new BackstoreError(
      'ENOTBLK',
      `block backstore ${name}: ${path} is not a block device${st.isFile() ? " (an image file: use a 'file' backstore)" : ''}`,
    );
  }
  const { major, minor } = decodeRdev(st.rdev);
  const sys = await readBlockSysfs(opts.sysfsRoot ?? '/sys', major, minor, path);
  if (sys.size === 0) throw new BackstoreError('ESIZE', `block backstore ${name}: ${path} has size 0 (no medium?)`);
  const readOnly = opts.readOnly === true || sys.readOnly;
  const excl = opts.exclusive === false ? 0 : C.O_EXCL;
  let handle: fsp.FileHandle;
  let dsyncHandle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(path, (readOnly ? C.O_RDONLY : C.O_RDWR) | excl);
  } catch (err) {
    throw openError(err, 'block', name, path);
  }
  try {
    // The second fd cannot be O_EXCL too (EBUSY against our own first one).
    if (opts.fua !== 'fdatasync' && !readOnly) dsyncHandle = await fsp.open(path, C.O_RDWR | C.O_DSYNC);
  } catch (err) {
    await handle.close().catch(() => {});
    throw openError(err, 'block', name, path);
  }
  return new BlockBackstore({
    kind: 'block',
    name,
    path,
    size: sys.size,
    readOnly,
    // Writes go through the page cache until fdatasync: a volatile cache in SBC terms.
    volatileCache: true,
    handle,
    ...(dsyncHandle ? { dsyncHandle } : {}),
  });
}
