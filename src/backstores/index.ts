// The backstores: RAM (sparse chunks), image file, block device.
export * from './backstore';
export { openRam, RamBackstore, RAM_CHUNK_SIZE } from './ram';
export type { RamOptions } from './ram';
export { openFile, FileBackstore } from './file';
export type { FileOptions } from './file';
export { openBlock, BlockBackstore, decodeRdev, readBlockSysfs } from './block';
export type { BlockOptions, BlockSysfsInfo } from './block';
export { FdBackstore } from './fd-backstore';
export type { FuaMode } from './fd-backstore';
export { parseSize, formatSize } from './size';
