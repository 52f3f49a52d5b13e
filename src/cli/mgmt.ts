// The management subcommands (shell, console, probe, config import|export) and the
// daemon side of management (control socket + serial console) that `serve` starts.

import * as fs from 'node:fs';
import * as net from 'node:net';
import { exportSaveconfig, importSaveconfig } from '../config/targetcli';
import { loadConfig, saveConfig } from '../config/index';
import type { LunboxConfig } from '../config/index';
import { bridgeTerminal, runScript, runScripts } from '../console/client';
import type { ConsoleStream } from '../console/client';
import { DEFAULT_CONTROL_SOCKET, openControlSocket } from '../console/control';
import type { ControlServer } from '../console/control';
import { ConfigModel } from '../console/model';
import type { DirEntry, ShellRuntime } from '../console/model';
import type { UsbDependant } from '../runtime';
import { DEFAULT_BAUD_RATE, DEFAULT_CONSOLE_DEVICE, SerialConsole } from '../console/serial';
import { findLunboxPort, openSerialStream } from '../host/console';
import { describeDevice, formatReport, listLunboxDevices, probeDevice, progressBar, selectDevice } from '../host/probe';
import { loadUsb } from '../host/usb-binding';
import type { UsbBinding } from '../host/usb-binding';
import type { Logger } from '../util/log';
import { VERSION } from '../version';
import type { MgmtCommand } from './mgmt-args';

export const DEFAULT_CONFIG_FILE = '/etc/lunbox/config.json';

export const HELP_SHELL = `Usage: lunbox shell [--control PATH] [-c "COMMAND"]

The management shell of the running daemon, over its control socket
(default ${DEFAULT_CONTROL_SOCKET}; root only). A tree like targetcli's:
  /backstores/{block,file,ram}  /iscsi/<iqn>/tpg1/{luns,acls,portals}  /usb  /sbp2
with ls, cd, create, delete, set/get, info, changemedium/eject (CD-ROM discs), saveconfig,
restoreconfig, help. Changes apply live; saveconfig writes the config file's own content plus
the changes (never serve --listen). Tab completes; arrows recall history; Ctrl-D leaves.
  -c "COMMAND"     run one command, print its output; exit status 0 if it succeeded
Commands on stdin (not a terminal) run one per line; the exit status is 1 if any failed.`;

export const HELP_CONSOLE = `Usage: lunbox console [PORT] [--baud N] [-c "COMMAND"] [--timeout S]

The board's shell over its serial console, from the computer it is plugged into.
PORT defaults to the lunbox USB serial port (USB 1d6b:0104 or manufacturer "lunbox");
any serial port works (a UART adapter: give --baud, default ${DEFAULT_BAUD_RATE}).
Interactive: the board edits the line (tab, history); Ctrl-] quits.
  -c "COMMAND"     run one command, print its output; exit status 0 if it succeeded
  --timeout S      seconds to wait for the answer to -c [30]`;

export const HELP_PROBE = `Usage: lunbox probe [DEVICE] [--test] [--lun N] [--read MiB] [--json]

Lists lunbox devices on this computer's USB bus (node-usb / libusb). With DEVICE
(BUS:ADDR or serial number) or --test, talks Bulk-Only Transport to it directly,
detaching the kernel's usb-storage driver meanwhile: INQUIRY, READ CAPACITY and a
read-throughput test (--read MiB, default 64; 0: none), then prints a report; the kernel
driver is given the device back afterwards. --lun N (0..15) picks the LUN [0]; --json prints
the list or the report as JSON. Needs root or a udev rule giving access to the device.`;

export const HELP_CONFIG_IO = `Usage: lunbox config import SAVECONFIG.json [-o OUT]
       lunbox config export [CONFIG] [-o OUT]

import: reads targetcli/LIO's saveconfig.json (storage_objects fileio/block/ramdisk,
  iSCSI targets with TPGs, LUNs, ACLs with mapped LUNs and CHAP, portals, attributes,
  parameters) and prints a lunbox config (or writes it atomically to OUT).
export: writes CONFIG (default ${DEFAULT_CONFIG_FILE}) as a saveconfig.json.
Either way, everything that cannot be carried over is listed on stderr.`;

// ------------------------------------------------------------------ daemon side

/** A directory on the board, for the shell's tab completion of image paths (symlinks followed). */
function listDir(dir: string): DirEntry[] {
  return fs.readdirSync(dir, { withFileTypes: true }).map((e) => {
    let isDir = e.isDirectory();
    if (e.isSymbolicLink()) isDir = fs.statSync(`${dir}/${e.name}`, { throwIfNoEntry: false })?.isDirectory() === true;
    return { name: e.name, dir: isDir };
  });
}

export interface ManagementOptions {
  readonly configFile?: string;
  /** The config file's own content (without command-line overrides): what saveconfig writes. */
  readonly fileConfig?: LunboxConfig;
  /** The command-line overrides (serve --listen), applied again by restoreconfig. */
  readonly overlay?: (fromFile: LunboxConfig) => LunboxConfig;
  /** --console DEVICE ('none' disables). */
  readonly consoleDevice?: string;
  /** --control PATH ('none' disables). */
  readonly control?: string;
}

export interface Management {
  readonly model: ConfigModel;
  readonly control?: ControlServer;
  readonly serial?: SerialConsole;
  /** Stop serving the shell; the serial port's close is begun, not waited for. */
  stop(): Promise<void>;
  /** Wait (bounded) for the serial port's close: after the USB gadget is gone (serial.ts). */
  closed(): Promise<void>;
}

/** Start the control socket and (when configured) the serial console of a running daemon. */
export async function startManagement(
  rt: ShellRuntime & { config: LunboxConfig; addUsbDependant?(d: UsbDependant): void },
  opts: ManagementOptions,
  logger: Logger,
): Promise<Management> {
  const cfg = rt.config;
  const model = new ConfigModel({
    config: cfg,
    runtime: rt,
    listDir,
    ...(opts.configFile !== undefined ? { file: opts.configFile } : {}),
    ...(opts.fileConfig !== undefined ? { saved: opts.fileConfig } : {}),
    ...(opts.overlay !== undefined ? { overlay: opts.overlay } : {}),
  });
  const banner = `lunbox ${VERSION} management shell (help for commands)`;
  let control: ControlServer | undefined;
  const socketPath = opts.control ?? (cfg.control?.socket === false ? 'none' : cfg.control?.socket) ?? DEFAULT_CONTROL_SOCKET;
  if (socketPath !== 'none') {
    try {
      control = await openControlSocket(socketPath, model, { banner, log: (m) => logger.debug(m) });
      logger.debug(`control socket ${socketPath}`);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'EACCES' ? `permission denied (the default ${DEFAULT_CONTROL_SOCKET} needs root; choose one with --control PATH)` : e.message;
      logger.warn(`no control socket (lunbox shell unavailable): ${why}`);
    }
  }
  let serial: SerialConsole | undefined;
  const cfgDevice = cfg.console === undefined ? undefined : cfg.console.device === false ? 'none' : (cfg.console.device ?? DEFAULT_CONSOLE_DEVICE);
  const device = opts.consoleDevice ?? cfgDevice;
  if (device !== undefined && device !== 'none') {
    try {
      serial = new SerialConsole(model, {
        device,
        ...(cfg.console?.baudRate !== undefined ? { baudRate: cfg.console.baudRate } : {}),
        banner,
        log: (level, m) => logger[level](m),
      });
      serial.start();
      // The gadget's own ACM port goes away when a live change rebuilds the gadget, and the ACM
      // function cannot be removed while the port is open: the console lets go meanwhile.
      if (/\/ttyGS\d+$/.test(device)) {
        const s = serial;
        rt.addUsbDependant?.({
          release: () => s.pause('\r\n[lunbox: the USB gadget is being rebuilt for a live change: this console disconnects and comes back]\r\n'),
          released: () => s.closed(),
          reattach: () => s.resume(),
        });
      }
    } catch (err) {
      logger.warn(`no serial console on ${device}: ${(err as Error).message}`);
      serial = undefined;
    }
  }
  return {
    model,
    ...(control ? { control } : {}),
    ...(serial ? { serial } : {}),
    stop: async () => {
      await serial?.stop().catch(() => undefined);
      await control?.close().catch(() => undefined);
    },
    closed: async () => {
      await serial?.closed().catch(() => undefined);
    },
  };
}

// ------------------------------------------------------------------ client side

function socketStream(path: string): Promise<ConsoleStream> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    sock.setEncoding('utf8');
    sock.once('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'ENOENT' ? 'no such socket (is the daemon running? started with another --control?)'
        : e.code === 'EACCES' ? 'permission denied (the control socket is for root)'
        : e.code === 'ECONNREFUSED' ? 'nobody listening (a stale socket: the daemon is not running)'
        : e.message;
      reject(new Error(`cannot connect to ${path}: ${why}`));
    });
    sock.once('connect', () => {
      const closeCbs: ((why?: string) => void)[] = [];
      sock.on('close', () => closeCbs.forEach((cb) => cb()));
      sock.on('error', () => undefined);
      resolve({
        write: (t) => void sock.write(t),
        onData: (cb) => void sock.on('data', (d: string) => cb(d)),
        onClose: (cb) => void closeCbs.push(cb),
        close: () => void sock.end(),
      });
    });
  });
}

async function readStdinLines(): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/);
}

/** Script or interactive use of a console stream; returns the exit status. */
async function useStream(stream: ConsoleStream, command: string | undefined, timeoutMs: number | undefined, nudge: boolean): Promise<number> {
  if (command !== undefined) {
    const r = await runScript(stream, command, timeoutMs).finally(() => stream.close());
    if (r.output) process.stdout.write(r.output + '\n');
    return r.ok ? 0 : 1;
  }
  if (!process.stdin.isTTY) {
    const ok = await runScripts(stream, await readStdinLines(), (t) => process.stdout.write(t), timeoutMs).finally(() => stream.close());
    return ok ? 0 : 1;
  }
  await bridgeTerminal(stream, { stdin: process.stdin, stdout: process.stdout }, { nudge });
  return 0;
}

export async function runMgmt(cmd: MgmtCommand, deps: { usb?: () => UsbBinding } = {}): Promise<number> {
  switch (cmd.kind) {
    case 'shell': {
      const stream = await socketStream(cmd.control ?? DEFAULT_CONTROL_SOCKET);
      return useStream(stream, cmd.command, undefined, false);
    }
    case 'console': {
      const port = cmd.port ?? (await findLunboxPort());
      const stream = await openSerialStream(port, cmd.baudRate ?? DEFAULT_BAUD_RATE);
      if (cmd.command === undefined && process.stdin.isTTY) process.stderr.write(`connected to ${port} (Ctrl-] to quit)\n`);
      return useStream(stream, cmd.command, cmd.timeoutMs, true);
    }
    case 'probe': {
      const usb = (deps.usb ?? loadUsb)();
      const list = await listLunboxDevices(usb);
      if (!cmd.test) {
        if (cmd.json) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        else if (list.length === 0) process.stdout.write('no lunbox devices found\n');
        else process.stdout.write(list.map(describeDevice).join('\n') + '\nprobe one with: lunbox probe BUS:ADDR (or --test)\n');
        return 0;
      }
      const info = selectDevice(list, cmd.device);
      const tty = process.stderr.isTTY === true;
      const report = await probeDevice(usb, info, {
        lun: cmd.lun,
        readMiB: cmd.readMiB,
        progress: (done, total, ms) => {
          if (tty) process.stderr.write(`\r${progressBar(done, total, ms)}`);
        },
      });
      if (tty && report.read) process.stderr.write('\n');
      process.stdout.write((cmd.json ? JSON.stringify(report, null, 2) : formatReport(report)) + '\n');
      return 0;
    }
    case 'config-import': {
      const raw = JSON.parse(await fs.promises.readFile(cmd.file, 'utf8')) as unknown;
      const { config, unmapped } = importSaveconfig(raw);
      for (const u of unmapped) process.stderr.write(`not imported: ${u}\n`);
      if (cmd.out !== undefined) {
        await saveConfig(cmd.out, config);
        process.stderr.write(`${cmd.out}: written (${config.backstores.length} backstore(s), ${config.iscsi?.targets.length ?? 0} iSCSI TPG(s))\n`);
      } else process.stdout.write(JSON.stringify(config, null, 2) + '\n');
      return 0;
    }
    case 'config-export': {
      const cfg = await loadConfig(cmd.file ?? DEFAULT_CONFIG_FILE);
      const { saveconfig, unmapped } = exportSaveconfig(cfg, {
        sizeOf: (p) => {
          try {
            return fs.statSync(p).size;
          } catch {
            return undefined;
          }
        },
      });
      for (const u of unmapped) process.stderr.write(`not exported: ${u}\n`);
      const text = JSON.stringify(saveconfig, null, 2) + '\n';
      if (cmd.out !== undefined) await fs.promises.writeFile(cmd.out, text, { mode: 0o600 });
      else process.stdout.write(text);
      return 0;
    }
  }
}
