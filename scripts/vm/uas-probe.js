#!/usr/bin/env node
// Does FunctionFS (this kernel) accept UAS descriptors? alt 0 = BOT, alt 1 = UAS with pipe usage descriptors.
const fs = require('fs');
const { execSync } = require('child_process');
const G = '/sys/kernel/config/usb_gadget/uasprobe';
execSync(`mkdir -p ${G} ${G}/functions/ffs.uasprobe /dev/ffs-uasprobe && mount -t functionfs uasprobe /dev/ffs-uasprobe`);
const intf = (alt, n, proto) => [9, 4, 0, alt, n, 8, 6, proto, 0];
const ep = (addr, mps) => [7, 5, addr, 2, mps & 0xff, mps >> 8, 0];
const pipe = (id) => [4, 0x24, id, 0];
function blob(withPipes, withAlt1) {
  const set = (mps) => {
    const d = [...intf(0, 2, 0x50), ...ep(0x81, mps), ...ep(0x02, mps)];
    let count = 3;
    if (withAlt1) {
      d.push(...intf(1, 4, 0x62));
      count++;
      const eps = [[0x03, 1], [0x84, 2], [0x85, 3], [0x06, 4]]; // command OUT, status IN, data-in IN, data-out OUT
      for (const [a, id] of eps) { d.push(...ep(a, mps)); count++; if (withPipes) { d.push(...pipe(id)); count++; } }
    }
    return { d, count };
  };
  const fsd = set(64), hsd = set(512);
  const body = Buffer.from([...fsd.d, ...hsd.d]);
  const head = Buffer.alloc(20);
  head.writeUInt32LE(3, 0); head.writeUInt32LE(20 + body.length, 4); head.writeUInt32LE(1 | 2, 8);
  head.writeUInt32LE(fsd.count, 12); head.writeUInt32LE(hsd.count, 16);
  return Buffer.concat([head, body]);
}
for (const [name, pipes, alt1] of [['BOT only', false, false], ['BOT + UAS alt 1 without pipe usage descriptors', false, true], ['BOT + UAS alt 1 with pipe usage descriptors', true, true]]) {
  const fd = fs.openSync('/dev/ffs-uasprobe/ep0', 'r+');
  try { fs.writeSync(fd, blob(pipes, alt1)); console.log(`${name}: descriptors ACCEPTED`); }
  catch (e) { console.log(`${name}: descriptors REJECTED (${e.code || e.errno})`); }
  fs.closeSync(fd);
}
execSync(`umount /dev/ffs-uasprobe; rmdir ${G}/functions/ffs.uasprobe ${G}`);
