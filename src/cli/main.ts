// `lunbox`: the one command of the one-file bundle (dist/lunbox.js).

import { hostname } from 'node:os';
import * as nodePath from 'node:path';
import { configWarnings, loadConfig, redactSecrets, validateConfig } from '../config/index';
import type { LunboxConfig } from '../config/index';
import { NcmDefaults } from '../fabrics/usb/ncm';
import { planLink } from '../net/ipv4';
import { Runtime } from '../runtime';
import { createLogger } from '../util/log';
import { VERSION } from '../version';
import { boardCommand, HELP_BOARD } from './board';
import { parseArgs, UsageError } from './args';
import type { ServeOptions } from './args';
import { HELP_CONFIG_IO, HELP_CONSOLE, HELP_PROBE, HELP_SHELL, runMgmt, startManagement } from './mgmt';

const HELP_MAIN = `lunbox ${VERSION} - a userspace SCSI target: iSCSI and USB mass storage (disk, CD-ROM); SBP-2 next

Usage:
  lunbox serve [OPTIONS]         serve LUNs until SIGINT/SIGTERM
  lunbox config check FILE       validate a config file and print what it defines
  lunbox config import|export    targetcli/LIO saveconfig.json to a lunbox config and back
  lunbox shell [-c CMD]          the management shell of the running daemon (control socket)
  lunbox console [PORT] [-c CMD] the board's shell over its USB serial console (from the computer)
  lunbox probe [DEVICE]          list lunbox USB devices; test one over Bulk-Only Transport
  lunbox board [--json]          the detected board (Raspberry Pi, BeagleBone) and its facts
  lunbox help [COMMAND]          this text, or help on one command
  lunbox --version

With no options, 'lunbox serve' exports a 64 MiB RAM disk as LUN 0 of one iSCSI
target on 127.0.0.1:3260 and prints its URL, e.g.
  iscsi://127.0.0.1:3260/iqn.2026-11.org.lunbox:myhost/0
which any initiator takes: iscsi-ls, iscsiadm, qemu, Windows/macOS initiators.

See 'lunbox serve --help' for the options.`;

const HELP_SERVE = `Usage: lunbox serve [OPTIONS]

Quick one-LUN export (no config file):
      --usb              export it as USB mass storage on the board's device port
                         (configfs gadget + FunctionFS; iSCSI then only with --listen)
      --udc NAME         the USB device controller (/sys/class/udc) [the board's]
      --acm              add an ACM serial port beside the disk (/dev/ttyGS0 here,
                         /dev/ttyACM0 on the computer)
      --ncm              add a USB network (CDC NCM): the board takes 10.55.0.1/30 on
                         usb0, gives the computer 10.55.0.2 by DHCP (no router, no DNS),
                         and the iSCSI portal listens on 10.55.0.1:3260 (unless --listen)
      --ncm-address A/N  the board's address on that network [10.55.0.1/30]
      --serial TEXT      USB serial number string
      --usb-engine E     who serves the USB LUNs: 'userspace' (lunbox's SCSI core,
                         default; plain READ/WRITE in a worker thread, in C when the
                         lunbox-fast addon is beside the bundle (npm run build makes
                         it), off with LUNBOX_USB_FASTPATH=0 or usb.fastPath false) or
                         'kernel' (the kernel's mass_storage function: file/block
                         backstores only)
  -b, --backstore SPEC   what to export as LUN 0 [ram:64M; none with only --cdrom]
                           ram:SIZE           sparse RAM disk, e.g. ram:1G
                           file:PATH[:SIZE]   image file; created sparse at SIZE if missing
                           block:DEVICE       a block device, e.g. block:/dev/sda
      --cdrom ISO        add a CD-ROM drive with ISO as its disc (read-only, 2048-byte
                         blocks, MMC): LUN 1 beside a --backstore disk, else LUN 0
      --iqn IQN          target name [iqn.2026-11.org.lunbox:<hostname>]
      --read-only        the LUN refuses writes (DATA PROTECT)
      --block-size N     logical block size: 512, 1024, 2048 or 4096 [512]

From a config file:
  -c, --config FILE      JSON config: backstores, iSCSI targets, LUNs, ACLs, CHAP
                         (see README "Configuration"; check it with 'lunbox config check');
                         --listen replaces its portals while running (the shell's
                         saveconfig still writes the file's own)

Management:
      --console DEVICE   serve the shell on a serial device (e.g. /dev/ttyGS0, /dev/ttyAMA0;
                         default: console.device of the config; 'none': off)
      --control PATH     control socket for 'lunbox shell' [/run/lunbox/control.sock]
                         ('none': off)
      --state-dir DIR    where state that outlives a restart is kept: persistent
                         reservations with APTPL, under DIR/pr [the config file's
                         directory; none for a quick export: APTPL is then refused]

Either way:
  -l, --listen ADDR:PORT portal to listen on; repeatable [127.0.0.1:3260]
                         ([::1]:3260 for IPv6; 0.0.0.0:3260 to serve the network)
  -v, --verbose          debug logging
  -q, --quiet            warnings and errors only

Prints one line per LUN on stdout, beginning iscsi://, once it is ready.
Logs go to stderr (journald-style <N> priority prefixes when not a terminal).
SIGINT/SIGTERM: initiators are asked to log out, backstores are flushed, then exit 0.`;

const HELP_CONFIG = `Usage: lunbox config check FILE

Validates FILE as a lunbox config and prints it with CHAP secrets hidden.
Every error names the path of the bad field (e.g. iscsi.targets[0].luns[1].backstore)
and what would be valid. Exit status 0 when valid, 1 otherwise.`;

function defaultIqn(): string {
  const host = hostname().toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[-.]+|[-.]+$/g, '') || 'lunbox';
  return `iqn.2026-11.org.lunbox:${host}`;
}

/** The config `serve` runs when no --config is given: one LUN, one target, one portal. */
export function quickConfig(opts: ServeOptions): LunboxConfig {
  // --cdrom alone exports only the drive; otherwise the disk is LUN 0 and the drive LUN 1.
  const withDisk = opts.backstore !== undefined || opts.cdrom === undefined;
  const spec = opts.backstore ?? { type: 'ram' as const, size: '64M' };
  // iSCSI on 127.0.0.1:3260 unless this is a USB export without --listen; with NCM, on the
  // board's address on the cable.
  const ncmPlan = opts.ncm ? planLink(opts.ncmAddress ?? NcmDefaults.address) : undefined;
  const listen =
    opts.listen.length > 0 ? opts.listen
    : typeof ncmPlan === 'object' ? [{ address: ncmPlan.board, port: 3260 }]
    : opts.usb ? []
    : [{ address: '127.0.0.1', port: 3260 }];
  const name = spec.type === 'ram' ? 'ram0' : spec.type === 'file' ? 'file0' : 'block0';
  const luns = [
    ...(withDisk ? [{ lun: 0, backstore: name }] : []),
    ...(opts.cdrom !== undefined ? [{ lun: withDisk ? 1 : 0, backstore: 'cdrom0' }] : []),
  ];
  const disk = {
    name,
    type: spec.type,
    ...('path' in spec ? { path: spec.path } : {}),
    ...('size' in spec && spec.size !== undefined ? { size: spec.size } : {}),
    ...(opts.readOnly ? { readOnly: true } : {}),
    ...(opts.blockSize !== undefined ? { blockSize: opts.blockSize } : {}),
    // A USB disk is removable medium, like the kernel's mass_storage LUNs.
    ...(opts.usb ? { removable: true } : {}),
  };
  const raw = {
    version: 1,
    backstores: [
      ...(withDisk ? [disk] : []),
      ...(opts.cdrom !== undefined ? [{ name: 'cdrom0', type: 'file', path: opts.cdrom, cdrom: true }] : []),
    ],
    ...(listen.length > 0
      ? {
          iscsi: {
            portals: listen.map((l) => ({ address: l.address, port: l.port })),
            targets: [{ iqn: opts.iqn ?? defaultIqn(), luns }],
          },
        }
      : {}),
    ...(opts.usb
      ? {
          usb: {
            gadget: {
              acm: opts.acm,
              ...(opts.ncm ? { ncm: opts.ncmAddress !== undefined ? { address: opts.ncmAddress } : true } : {}),
              ...(opts.udc !== undefined ? { udc: opts.udc } : {}),
              ...(opts.usbSerial !== undefined ? { serial: opts.usbSerial } : {}),
            },
            ...(opts.usbEngine !== undefined ? { engine: opts.usbEngine } : {}),
            luns,
          },
        }
      : {}),
  };
  return validateConfig(raw);
}

/** The command-line overrides of a config file: --listen replaces every portal of the file. */
export function withOverrides(config: LunboxConfig, opts: Pick<ServeOptions, 'listen'>): LunboxConfig {
  if (opts.listen.length === 0 || !config.iscsi) return config;
  // Handy for tests and one-off runs; never written back by saveconfig.
  const portals = opts.listen.map((l) => ({ address: l.address, port: l.port }));
  return validateConfig({
    ...config,
    iscsi: { ...config.iscsi, portals, targets: config.iscsi.targets.map((t) => ({ ...t, portals })) },
  });
}

async function serve(opts: ServeOptions): Promise<number> {
  const logger = createLogger({ verbose: opts.verbose, quiet: opts.quiet });
  let config: LunboxConfig;
  let fileConfig: LunboxConfig | undefined;
  const overlay = (c: LunboxConfig): LunboxConfig => withOverrides(c, opts);
  if (opts.config !== undefined) {
    fileConfig = await loadConfig(opts.config);
    config = overlay(fileConfig);
  } else {
    config = quickConfig(opts);
  }
  for (const w of configWarnings(config)) logger.warn(`${w.path ? w.path + ': ' : ''}${w.message}`);
  // APTPL reservations are kept next to the config file; a quick export has no such place
  // unless --state-dir names one, and then refuses APTPL (PTPL_C=0) rather than lose it.
  const stateDir =
    opts.stateDir === 'none' ? undefined
    : opts.stateDir ?? (opts.config !== undefined ? nodePath.dirname(nodePath.resolve(opts.config)) : undefined);
  const rt = await Runtime.start(config, logger, stateDir !== undefined ? { stateDir } : {});
  const mgmt = await startManagement(
    rt,
    {
      ...(opts.config !== undefined ? { configFile: opts.config } : {}),
      // saveconfig writes the file's own config plus the shell's changes, not --listen.
      ...(fileConfig !== undefined ? { fileConfig, overlay } : {}),
      ...(opts.console !== undefined ? { consoleDevice: opts.console } : {}),
      ...(opts.control !== undefined ? { control: opts.control } : {}),
    },
    logger,
  );
  for (const url of rt.urls()) process.stdout.write(url + '\n');
  const udc = rt.usbUdc();
  if (udc !== undefined) process.stdout.write(`usb: ready ${udc}\n`);
  const net = rt.usbNetwork();
  if (net) process.stdout.write(`ncm: ready ${net.ifname} ${net.board}/${net.prefix} computer ${net.host} ${net.hostMac}${net.dhcp ? '' : ' (no DHCP)'}\n`);
  logger.info(`ready: ${rt.urls().length} iSCSI LUN(s) on ${rt.portals().map((p) => `${p.address}:${p.port}`).join(', ') || 'no portal'}${udc !== undefined ? `; USB mass storage on ${udc}` : ''}`);

  return new Promise<number>((resolve) => {
    // Nothing of lunbox's may be pending (the kernel engine serves USB, no portal, no console):
    // the daemon still runs until a signal.
    const keepAlive = setInterval(() => undefined, 2 ** 30);
    let stopping = false;
    const stop = (sig: string): void => {
      clearInterval(keepAlive);
      if (stopping) {
        logger.warn(`${sig} again: exiting at once`);
        process.exit(130);
      }
      stopping = true;
      logger.info(`${sig}: shutting down`);
      // The shell stops first (its serial port begins closing), then the runtime, whose USB
      // teardown ends a ttyGS0 close held by output the computer never read; then the close.
      mgmt
        .stop()
        .then(() => rt.stop())
        .then(() => mgmt.closed())
        .then(
        () => resolve(0),
        (e: Error) => {
          logger.error(`shutdown: ${e.message}`);
          resolve(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}

async function configCheck(file: string): Promise<number> {
  const cfg = await loadConfig(file);
  process.stdout.write(JSON.stringify(redactSecrets(cfg), null, 2) + '\n');
  for (const w of configWarnings(cfg)) process.stderr.write(`warning: ${w.path ? w.path + ': ' : ''}${w.message}\n`);
  const luns = (cfg.iscsi?.targets ?? []).reduce((n, t) => n + t.luns.length, 0);
  process.stderr.write(`${file}: valid: ${cfg.backstores.length} backstore(s), ${cfg.iscsi?.targets.length ?? 0} iSCSI target(s), ${luns} LUN(s)\n`);
  return 0;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    const cmd = parseArgs(argv);
    switch (cmd.kind) {
      case 'help':
        process.stdout.write(
          (cmd.topic === 'serve' ? HELP_SERVE
          : cmd.topic === 'config' ? `${HELP_CONFIG}\n\n${HELP_CONFIG_IO}`
          : cmd.topic === 'shell' ? HELP_SHELL
          : cmd.topic === 'console' ? HELP_CONSOLE
          : cmd.topic === 'probe' ? HELP_PROBE
          : cmd.topic === 'board' ? HELP_BOARD
          : HELP_MAIN) + '\n',
        );
        return 0;
      case 'version':
        process.stdout.write(`lunbox ${VERSION}\n`);
        return 0;
      case 'serve':
        return await serve(cmd.opts);
      case 'config-check':
        return await configCheck(cmd.file);
      case 'board':
        return boardCommand(cmd.argv);
      default:
        return await runMgmt(cmd);
    }
  } catch (err) {
    const e = err as Error;
    if (err instanceof UsageError) {
      process.stderr.write(`lunbox: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`lunbox: ${e.message}\n`);
    if (process.env['LUNBOX_DEBUG']) process.stderr.write(`${e.stack ?? ''}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`lunbox: internal error: ${err.stack ?? err.message}\n`);
      process.exit(70);
    },
  );
}
