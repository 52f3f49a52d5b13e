// Helpers for integration tests: start the real bundle (dist/lunbox.js) as a child
// process and talk to it with real initiators (libiscsi tools, qemu-img).

import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
export const BUNDLE = join(ROOT, 'dist', 'lunbox.js');

export interface Lunbox {
  readonly proc: ChildProcess;
  readonly urls: string[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** SIGTERM, wait for exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Start `node dist/lunbox.js serve ARGS` and wait until it printed `count` iscsi:// URLs. */
export function startLunbox(args: readonly string[], opts: { count?: number; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Lunbox> {
  const count = opts.count ?? 1;
  const proc = spawn(process.execPath, [BUNDLE, 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let out = '';
  let err = '';
  const urls: string[] = [];
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const lb: Lunbox = {
    proc,
    urls,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  return new Promise<Lunbox>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`lunbox did not print ${count} URL(s) within ${opts.timeoutMs ?? 15000} ms; stderr:\n${err}`));
    }, opts.timeoutMs ?? 15_000);
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      out = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('iscsi://')) urls.push(l.trim());
      if (urls.length >= count) {
        clearTimeout(timer);
        resolve(lb);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      if (urls.length < count) reject(new Error(`lunbox exited (${code}) before it was ready; stderr:\n${err}`));
    });
  });
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a command; never rejects on a non-zero exit (the test asserts on `code`). */
export function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...opts.env } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 124) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

export function tempDir(prefix = 'lunbox-it-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeJson(file: string, value: unknown): string {
  writeFileSync(file, JSON.stringify(value, null, 2));
  return file;
}

/** Split an iscsi://host:port/iqn/lun URL. */
export function parseUrl(url: string): { host: string; port: number; iqn: string; lun: number } {
  const m = /^iscsi:\/\/(?:[^@]*@)?(\[[^\]]+\]|[^:/]+):(\d+)\/([^/]+)\/(\d+)$/.exec(url);
  if (!m) throw new Error(`not an iscsi URL: ${url}`);
  return { host: m[1] ?? '', port: Number(m[2]), iqn: m[3] ?? '', lun: Number(m[4]) };
}

/** qemu-img's --image-opts string for an iSCSI LUN (with CHAP credentials if given). */
export function qemuImageOpts(url: string, chap?: { user: string; password: string }): string {
  const u = parseUrl(url);
  const auth = chap ? `,file.user=${chap.user},file.password=${chap.password}` : '';
  return `driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=${u.host}:${u.port},file.target=${u.iqn},file.lun=${u.lun}${auth}`;
}

/** Outcome of one iscsi-test-cu test: CUnit says passed/FAILED; a pass that printed [SKIPPED] is a skip. */
export interface TestCuResult {
  readonly name: string;
  readonly outcome: 'passed' | 'failed' | 'skipped';
  readonly detail: string;
}

/**
 * Parse iscsi-test-cu's verbose output. CUnit prints `  Test: NAME ...`, then whatever the
 * test logs, then its result token `passed` or `FAILED` (right after the dots, or at the
 * start of a line). Text after the token on the same line is the suite's cleanup, not the
 * test's. CUnit counts a test that libiscsi skipped (it logs "[SKIPPED]" and passes) as
 * passed; here it is a skip.
 */
export function parseTestCu(output: string): TestCuResult[] {
  const results: TestCuResult[] = [];
  let suite = '';
  let cur: { name: string; text: string } | undefined;
  const finish = (token: string): void => {
    if (!cur) return;
    const failed = token === 'FAILED';
    const skipped = !failed && /\[SKIPPED\]/.test(cur.text);
    results.push({ name: cur.name, outcome: failed ? 'failed' : skipped ? 'skipped' : 'passed', detail: cur.text.trim().slice(0, 2000) });
    cur = undefined;
  };
  for (const line of output.split('\n')) {
    const s = /^Suite: (\S+)/.exec(line);
    if (s) {
      suite = s[1] ?? '';
      cur = undefined;
      continue;
    }
    const t = /^  Test: (\S+) \.\.\.(.*)$/.exec(line);
    const body = t ? (t[2] ?? '') : line;
    if (t) cur = { name: `${suite}.${t[1] ?? ''}`, text: '' };
    if (!cur) continue;
    const r = /^(passed|FAILED)\b/.exec(body);
    if (r) finish(r[1] ?? '');
    else cur.text += (cur.text ? '\n' : '') + body;
  }
  return results;
}

/** A socat PTY pair: [daemon end, test end]. */
export async function ptyPair(): Promise<{ a: string; b: string; proc: ChildProcess }> {
  const proc = spawn('socat', ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`socat gave no PTYs: ${err}`)), 5000);
    proc.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      const ptys = [...err.matchAll(/PTY is (\/dev\/pts\/\d+)/g)].map((m) => m[1]!);
      if (ptys.length >= 2 && /starting data transfer loop/.test(err)) {
        clearTimeout(t);
        resolve({ a: ptys[0]!, b: ptys[1]!, proc });
      }
    });
  });
}

/** Does a TCP connection to 127.0.0.1:PORT open (and then get closed by us)? */
export function tcp(p: number): Promise<'open' | 'refused'> {
  return new Promise((resolve, reject) => {
    const s = connect(p, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('open');
    });
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNREFUSED' ? resolve('refused') : reject(e)));
  });
}
