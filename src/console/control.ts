// The local control socket: `lunbox shell` on the board reaches the daemon's shell here.
// A Unix socket (never on the network) with mode 0600, so only its owner (root, for the
// service) may connect. Each connection gets its own ConsoleSession on the shared model.

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as nodePath from 'node:path';
import type { ConfigModel } from './model';
import { ConsoleSession } from './session';

export const DEFAULT_CONTROL_SOCKET = '/run/lunbox/control.sock';

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/** Is something answering on this socket path? */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function openControlSocket(path: string, model: ConfigModel, opts: { banner?: string; log?: (m: string) => void } = {}): Promise<ControlServer> {
  await fs.promises.mkdir(nodePath.dirname(path), { recursive: true, mode: 0o755 });
  const st = await fs.promises.lstat(path).catch(() => undefined);
  if (st) {
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket: not replacing it`);
    if (await alive(path)) throw new Error(`${path} is in use by another lunbox (choose another with --control PATH)`);
    await fs.promises.unlink(path); // stale, from a daemon that died
  }
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.setEncoding('utf8');
    const session = new ConsoleSession(model, { write: (t) => void (sock.writable && sock.write(t)), close: () => sock.end() }, {
      ...(opts.banner !== undefined ? { banner: opts.banner } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
    sock.on('data', (d: string) => session.feed(d));
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
    session.start();
  });
  // The socket must never exist with wider permissions, not even for a moment.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  await fs.promises.chmod(path, 0o600);
  const ino = (await fs.promises.lstat(path)).ino;
  return {
    path,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      // Remove it only if it is still ours (a newer daemon may have taken the path).
      const now = await fs.promises.lstat(path).catch(() => undefined);
      if (now && now.ino === ino) await fs.promises.unlink(path).catch(() => undefined);
    },
  };
}
