// RAM backstore: sparse, chunked. A chunk is allocated on its first write; reads of
// chunks never written fill zeros, so a 1 GiB RAM disk costs nothing until used.
import { BackstoreError } from './backstore';
import type { Backstore, WriteOptions } from './backstore';

export const RAM_CHUNK_SIZE = 1 << 20;

const DONE: Promise<void> = Promise.resolve();

export interface RamOptions {
  readonly name: string;
  readonly size: number;
  /** Allocation unit in bytes (power of two); tests use small chunks. Default 1 MiB. */
  readonly chunkSize?: number;
  /** Keep a protection information side store (a second sparse chunk map). */
  readonly protectionInfo?: boolean;
}

/** PI bytes for a data size: 8 per 512-byte block, the smallest logical block size. */
export function piSizeFor(size: number): number {
  return Math.ceil(size / 512) * 8;
}

export class RamBackstore implements Backstore {
  readonly kind = 'ram' as const;
  readonly readOnly = false;
  readonly canUnmap = true;
  readonly unmapReadsZero = true;
  readonly volatileCache = false;
  readonly chunkSize: number;
  readonly pi: RamBackstore | undefined;
  private readonly chunks = new Map<number, Buffer>();
  private _size: number;
  private closed = false;

  constructor(
    readonly name: string,
    size: number,
    chunkSize = RAM_CHUNK_SIZE,
    protectionInfo = false,
  ) {
    checkSize(name, size);
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new BackstoreError('EINVAL', `ram backstore ${name}: chunkSize ${chunkSize} is not a power of two`);
    }
    this._size = size;
    this.chunkSize = chunkSize;
    // The side store is itself a sparse RAM store: no memory until PI is written.
    this.pi = protectionInfo ? new RamBackstore(`${name}.pi`, piSizeFor(size), chunkSize) : undefined;
  }

  get size(): number {
    return this._size;
  }

  /** Chunks holding data (for `info` and tests). */
  get allocatedChunks(): number {
    return this.chunks.size;
  }

  /** Bytes of memory held by data chunks. */
  get allocatedBytes(): number {
    return this.chunks.size * this.chunkSize;
  }

  // read/write are the hot path (one call per 4 KiB I/O): plain functions with the chunk
  // loop inline, returning a shared settled promise, rather than async functions with a
  // callback per piece. Errors still arrive as rejections, never as throws.
  read(into: Buffer, intoOffset: number, length: number, position: number): Promise<void> {
    if (this.closed) return this.closedError();
    const size = this.chunkSize;
    let done = 0;
    while (done < length) {
      const pos = position + done;
      const index = Math.floor(pos / size);
      const off = pos - index * size;
      const len = Math.min(size - off, length - done);
      const chunk = this.chunks.get(index);
      if (chunk !== undefined) chunk.copy(into, intoOffset + done, off, off + len);
      else into.fill(0, intoOffset + done, intoOffset + done + len);
      done += len;
    }
    return DONE;
  }

  write(data: Buffer, position: number, _opts?: WriteOptions): Promise<void> {
    if (this.closed) return this.closedError();
    const size = this.chunkSize;
    const length = data.length;
    let done = 0;
    while (done < length) {
      const pos = position + done;
      const index = Math.floor(pos / size);
      const off = pos - index * size;
      const len = Math.min(size - off, length - done);
      let chunk = this.chunks.get(index);
      if (chunk === undefined) {
        // Buffer.alloc, not allocUnsafe: the rest of the chunk must read as zeros.
        chunk = Buffer.alloc(size);
        this.chunks.set(index, chunk);
      }
      data.copy(chunk, off, done, done + len);
      done += len;
    }
    return DONE;
  }

  async flush(): Promise<void> {
    this.checkOpen();
  }

  async unmap(position: number, length: number): Promise<void> {
    this.checkOpen();
    this.forEachPiece(position, length, (index, off, len) => {
      if (off === 0 && len === this.chunkSize) this.chunks.delete(index);
      else this.chunks.get(index)?.fill(0, off, off + len);
    });
  }

  async mapping(position: number, length: number): Promise<{ mapped: boolean; length: number }> {
    this.checkOpen();
    const first = Math.floor(position / this.chunkSize);
    const mapped = this.chunks.has(first);
    const end = position + length;
    // Extend the run chunk by chunk while the allocation state stays the same.
    let index = first + 1;
    while (index * this.chunkSize < end && this.chunks.has(index) === mapped) index++;
    return { mapped, length: Math.min(end, index * this.chunkSize) - position };
  }

  async resize(size: number): Promise<void> {
    this.checkOpen();
    checkSize(this.name, size);
    if (size < this._size) {
      const lastIndex = Math.floor((size - 1) / this.chunkSize);
      for (const index of [...this.chunks.keys()]) if (index > lastIndex) this.chunks.delete(index);
      // Zero the cut-off tail of the last chunk so a later grow reads zeros there.
      this.chunks.get(lastIndex)?.fill(0, size - lastIndex * this.chunkSize);
    }
    this._size = size;
    await this.pi?.resize(piSizeFor(size));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.chunks.clear();
    await this.pi?.close();
  }

  private closedError(): Promise<never> {
    return Promise.reject(new BackstoreError('EIO', `ram backstore ${this.name} is closed`));
  }

  private checkOpen(): void {
    if (this.closed) throw new BackstoreError('EIO', `ram backstore ${this.name} is closed`);
  }

  /** Split [position, position+length) at chunk boundaries. */
  private forEachPiece(
    position: number,
    length: number,
    fn: (index: number, offsetInChunk: number, len: number, done: number) => void,
  ): void {
    let done = 0;
    while (done < length) {
      const pos = position + done;
      const index = Math.floor(pos / this.chunkSize);
      const off = pos - index * this.chunkSize;
      const len = Math.min(this.chunkSize - off, length - done);
      fn(index, off, len, done);
      done += len;
    }
  }
}

function checkSize(name: string, size: number): void {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new BackstoreError('ESIZE', `ram backstore ${name}: size ${size} must be a whole number of bytes > 0`);
  }
}

export function openRam(opts: RamOptions): RamBackstore {
  return new RamBackstore(opts.name, opts.size, opts.chunkSize, opts.protectionInfo === true);
}
