// Human sizes for configs and the shell. Every suffix is binary (K = 1024), as in
// targetcli: '64M', '64MB' and '64MiB' all mean 64 × 2^20 bytes.
import { BackstoreError } from './backstore';

const UNITS = ['', 'K', 'M', 'G', 'T', 'P', 'E'] as const;
const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b)?\s*$/i;

/** Parse '4096', '512K', '64M', '1.5G', '64MiB', '1 GiB' (case-insensitive) into bytes. */
export function parseSize(text: string): number {
  const m = SIZE_RE.exec(text);
  if (!m) {
    throw new BackstoreError(
      'ESIZE',
      `bad size ${JSON.stringify(text)}: expected a number with an optional K/M/G/T/P/E suffix (e.g. '64M', '1.5GiB', '4096')`,
    );
  }
  const exp = UNITS.indexOf(((m[2] ?? '').toUpperCase()) as (typeof UNITS)[number]);
  const bytes = Number(m[1]) * 1024 ** exp;
  if (!Number.isSafeInteger(bytes)) {
    throw new BackstoreError(
      'ESIZE',
      `bad size ${JSON.stringify(text)}: ${Number.isInteger(bytes) ? 'too large' : 'not a whole number of bytes'}`,
    );
  }
  return bytes;
}

/** '64 MiB', '1.5 GiB', '512 B': the largest binary unit, at most two decimals. */
export function formatSize(bytes: number): string {
  let exp = 0;
  while (exp < UNITS.length - 1 && Math.abs(bytes) >= 1024 ** (exp + 1)) exp++;
  if (exp === 0) return `${bytes} B`;
  const value = Math.round((bytes / 1024 ** exp) * 100) / 100;
  return `${value} ${UNITS[exp]}iB`;
}
