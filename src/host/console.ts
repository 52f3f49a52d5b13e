// `lunbox console [PORT]`: the board's serial shell from the computer side, over the
// gadget's ACM port (found by its USB ids / manufacturer when PORT is not given) or any
// serial port. Interactive (the board does the line editing) or one command with -c.

import type { ConsoleStream } from '../console/client';
import { DEFAULT_BAUD_RATE, listSerialPorts, serialPortFactory } from '../console/serial';
import type { SerialPortFactory, SerialPortInfo } from '../console/serial';
import { LUNBOX_PID, LUNBOX_VID } from './probe';

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

/** The lunbox ACM port among the serial ports: VID:PID 1d6b:0104, or manufacturer "lunbox". */
export function pickLunboxPort(ports: readonly SerialPortInfo[]): SerialPortInfo {
  const byIds = ports.filter((p) => p.vendorId?.toLowerCase() === hex4(LUNBOX_VID) && p.productId?.toLowerCase() === hex4(LUNBOX_PID));
  const byName = ports.filter((p) => /lunbox/i.test(p.manufacturer ?? '') || /lunbox/i.test(p.pnpId ?? ''));
  // Both clues agreeing is best; then either one.
  const both = byIds.filter((p) => byName.includes(p));
  const hit = both[0] ?? byIds[0] ?? byName[0];
  if (!hit) {
    const seen = ports.map((p) => `${p.path}${p.vendorId ? ` (${p.vendorId}:${p.productId ?? '?'}${p.manufacturer ? ` ${p.manufacturer}` : ''})` : ''}`);
    throw new Error(
      `no lunbox serial console found (looked for USB ${hex4(LUNBOX_VID)}:${hex4(LUNBOX_PID)} or manufacturer "lunbox"); ` +
        `serial ports: ${seen.join(', ') || 'none'}. Give the port: lunbox console /dev/ttyACM0`,
    );
  }
  return hit;
}

export async function findLunboxPort(list: () => Promise<SerialPortInfo[]> = listSerialPorts): Promise<string> {
  return pickLunboxPort(await list()).path;
}

/** Open a serial port as a ConsoleStream (resolves once open). */
export function openSerialStream(path: string, baudRate = DEFAULT_BAUD_RATE, factory: SerialPortFactory = serialPortFactory()): Promise<ConsoleStream> {
  return new Promise((resolve, reject) => {
    const port = factory(path, baudRate);
    const closeCbs: ((why?: string) => void)[] = [];
    let open = false;
    port.on('error', (e) => {
      if (!open) reject(new Error(`cannot open ${path}: ${e.message}`));
      else for (const cb of closeCbs) cb(e.message);
    });
    port.on('close', () => {
      for (const cb of closeCbs) cb('port closed');
    });
    port.on('open', () => {
      open = true;
      resolve({
        write: (t) => void port.write(t),
        onData: (cb) => void port.on('data', (d: Buffer) => cb(d.toString('utf8'))),
        onClose: (cb) => void closeCbs.push(cb),
        close: () => void port.close(),
      });
    });
  });
}
