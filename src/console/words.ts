// Splitting a shell line into words: blanks separate, '…' and "…" quote, \ escapes.
// Also reports where the last word starts, for tab completion.

export class ShellError extends Error {
  readonly code: string;
  constructor(message: string, code = 'ESHELL') {
    super(message);
    this.name = 'ShellError';
    this.code = code;
  }
}

export interface Words {
  readonly words: string[];
  /** Offset in the line where the last word begins (line.length when the line ends in a blank). */
  readonly lastStart: number;
  /** The line ends inside quotes. */
  readonly open: boolean;
}

export function splitWords(line: string): Words {
  const words: string[] = [];
  let cur: string | undefined;
  let start = line.length;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i]!;
      else cur += ch;
      continue;
    }
    if (ch === ' ' || ch === '\t') {
      if (cur !== undefined) words.push(cur);
      cur = undefined;
      continue;
    }
    if (cur === undefined) {
      cur = '';
      start = i;
    }
    if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '\\' && i + 1 < line.length) cur += line[++i]!;
    else cur += ch;
  }
  const endsBlank = cur === undefined;
  if (cur !== undefined) words.push(cur);
  return { words, lastStart: endsBlank ? line.length : start, open: quote !== undefined };
}

/** Quote a word for display or completion when it holds blanks or quotes. */
export function quoteWord(w: string): string {
  return /^[^\s'"\\]*$/.test(w) && w !== '' ? w : `"${w.replace(/["\\]/g, (c) => '\\' + c)}"`;
}

/** `key=value` words into a map; the other words stay positional. */
export function splitKeyValues(words: readonly string[]): { positional: string[]; kv: Map<string, string> } {
  const positional: string[] = [];
  const kv = new Map<string, string>();
  for (const w of words) {
    const i = w.indexOf('=');
    if (i > 0) kv.set(w.slice(0, i), w.slice(i + 1));
    else positional.push(w);
  }
  return { positional, kv };
}
