// Where persistent reservations with APTPL live between runs: one JSON file per logical
// unit (keyed by its unit serial number) in a directory next to the config, written
// atomically so a power cut leaves the old or the new state. SPC-4 §5.9.4: without APTPL
// nothing is kept, so the file is removed then.
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import type { PrState, PrStore } from '../scsi/spc/persistent-reservations';
import { writeFileAtomic } from '../util/atomic-file';
import type { LogFn } from '../util/log';

export class FilePrStore implements PrStore {
  constructor(
    readonly dir: string,
    private readonly log?: LogFn,
  ) {}

  private file(luId: string): string {
    return nodePath.join(this.dir, `${encodeURIComponent(luId)}.json`);
  }

  async load(luId: string): Promise<PrState | undefined> {
    const file = this.file(luId);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot read reservation state ${file}: ${(err as Error).message}`);
    }
    const state = parseState(text);
    if (!state) {
      // Atomic saves make this unlikely; keep the evidence and start without reservations
      // rather than refuse to serve the disk.
      const aside = `${file}.corrupt-${Date.now()}`;
      await fsp.rename(file, aside).catch(() => undefined);
      this.log?.('error', `reservation state ${file} is not valid JSON state: moved to ${aside}; starting without persistent reservations for this LUN`);
      return undefined;
    }
    return state;
  }

  async save(luId: string, state: PrState): Promise<void> {
    const file = this.file(luId);
    if (!state.aptpl) {
      await fsp.unlink(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      return;
    }
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, Buffer.from(`${JSON.stringify(state, null, 2)}\n`), { what: 'reservation state' });
  }
}

function parseState(text: string): PrState | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o['generation'] !== 'number' || typeof o['aptpl'] !== 'boolean' || !Array.isArray(o['registrations'])) return undefined;
  for (const r of o['registrations'] as unknown[]) {
    if (typeof r !== 'object' || r === null) return undefined;
    const x = r as Record<string, unknown>;
    if (typeof x['key'] !== 'string' || !/^[0-9a-f]{16}$/i.test(x['key']) || typeof x['initiatorName'] !== 'string') return undefined;
    if (typeof x['relativeTargetPortId'] !== 'number' || typeof x['transportId'] !== 'string') return undefined;
  }
  return o as unknown as PrState;
}
