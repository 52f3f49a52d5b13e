// The fake configfs and the fake FunctionFS wired together as the kernel wires them: writing a
// UDC name binds (the FunctionFS function is ready once its descriptors are on ep0; the host
// configures at once: BIND + ENABLE on ep0, the endpoints live, high speed); writing "\n"
// unbinds (pending endpoint I/O fails with ESHUTDOWN, DISABLE + UNBIND are queued on ep0).
import * as path from 'node:path';
import type { ConfigFs } from '../../../src/fabrics/usb/gadget';
import type { FakeConfigFs } from './fake-configfs';
import type { FakeFfsIo } from './fake-ffs-io';

export function linked(cfs: FakeConfigFs, io: FakeFfsIo): ConfigFs {
  return {
    mkdir: (p) => cfs.mkdir(p),
    rmdir: (p) => cfs.rmdir(p),
    readAttr: (p) => cfs.readAttr(p),
    symlink: (t, p) => cfs.symlink(t, p),
    unlink: (p) => cfs.unlink(p),
    readdir: (p) => cfs.readdir(p),
    kind: (p) => cfs.kind(p),
    async writeAttr(p, v) {
      const isUdc = path.basename(p) === 'UDC';
      // The FunctionFS instance is named after the gadget (usb-target.ts).
      if (isUdc && v.trim() !== '' && io.bus.ep0.blobs.length >= 2) cfs.setFfsReady(path.basename(path.dirname(p)));
      await cfs.writeAttr(p, v);
      if (!isUdc) return;
      if (v.trim() === '') {
        io.disable();
        io.bus.ep0.event('disable');
        io.bus.ep0.event('unbind');
      } else {
        io.enable();
        io.sysfs.set(path.join(cfs.udcClass, v.trim(), 'current_speed'), 'high-speed\n');
        io.bus.ep0.event('bind');
        io.bus.ep0.event('enable');
      }
    },
  };
}
