// Stand-in for `lunbox serve --usb` until the CLI has it: export backstores as the LUNs of a
// USB mass-storage gadget (FunctionFS + Bulk-Only Transport) and run until SIGINT/SIGTERM.
//
//   node usb-serve.js --backstore file:/tmp/disk.img:256M [--backstore ram:64M ...]
//        [--udc dummy_udc.0] [--acm] [--vid 0x1d6b] [--pid 0x0104] [--serial S]
//        [--product P] [--read-only] [--chunk BYTES] [--verbose]
// Prints "usb: ready <udc>" on stdout once the UDC is bound, "usb: stopped" at the end.
// Bundle: npx tsup scripts/vm/usb-serve.ts --format cjs --platform node --target node18 --out-dir /tmp/usb-dist
import { parseBackstore } from '../../src/cli/args';
import { openBackstore } from '../../src/config/open-backstore';
import type { BackstoreConfig } from '../../src/config/schema';
import { UsbTarget } from '../../src/fabrics/usb/usb-target';
import { LogicalUnit } from '../../src/scsi/index';
import { createLogger } from '../../src/util/log';

async function main(argv: string[]): Promise<number> {
  const specs: string[] = [];
  let udc: string | undefined;
  let acm = false;
  let verbose = false;
  let readOnly = false;
  let vid: number | undefined;
  let pid: number | undefined;
  let serial: string | undefined;
  let product: string | undefined;
  let chunk: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    switch (a) {
      case '--backstore': case '-b': specs.push(v()); break;
      case '--udc': udc = v(); break;
      case '--acm': acm = true; break;
      case '--verbose': case '-v': verbose = true; break;
      case '--read-only': readOnly = true; break;
      case '--vid': vid = Number(v()); break;
      case '--pid': pid = Number(v()); break;
      case '--serial': serial = v(); break;
      case '--product': product = v(); break;
      case '--chunk': chunk = Number(v()); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (specs.length === 0) specs.push('ram:64M');
  const logger = createLogger({ verbose });
  const units: LogicalUnit[] = [];
  for (const [i, text] of specs.entries()) {
    const s = parseBackstore(text);
    const cfg: BackstoreConfig = {
      name: `${s.type}${i}`,
      type: s.type,
      ...('path' in s ? { path: s.path } : {}),
      ...('size' in s && s.size !== undefined ? { size: s.size } : {}),
      ...(readOnly ? { readOnly: true } : {}),
    };
    const store = await openBackstore(cfg);
    units.push(new LogicalUnit({ backstore: store, removable: true, ...(readOnly ? { readOnly } : {}) }));
  }
  const target = new UsbTarget({
    gadget: {
      ...(udc !== undefined ? { udc } : {}),
      acm,
      ...(vid !== undefined ? { vendorId: vid } : {}),
      ...(pid !== undefined ? { productId: pid } : {}),
      serial: serial ?? 'LUNBOX0001',
      ...(product !== undefined ? { product } : {}),
    },
    luns: units.map((unit, lun) => ({ lun, unit })),
    log: logger.log,
    ...(chunk !== undefined ? { chunkSize: chunk } : {}),
  });
  await target.start();
  process.stdout.write(`usb: ready ${target.udc ?? ''}\n`);
  const closeUnits = async (): Promise<void> => {
    for (const u of units) {
      await u.backstore.flush().catch(() => undefined);
      await u.close().catch(() => undefined);
    }
  };
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) process.exit(130);
      stopping = true;
      logger.info(`${sig}: stopping (${JSON.stringify(target.counters)})`);
      target
        .stop()
        .then(closeUnits)
        .then(
          () => {
            process.stdout.write('usb: stopped\n');
            resolve(0);
          },
          (e: Error) => {
            logger.error(e.message);
            resolve(1);
          },
        );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error & { code?: string }) => {
    process.stderr.write(`usb-serve: ${e.code ? e.code + ': ' : ''}${e.message}\n`);
    process.exit(1);
  },
);
