#!/usr/bin/env node
// What a Windows host would read from the gadget, read the same way through libusb (node-usb),
// for guest-ncm.sh:  node usb-descriptors.js SERIAL
// Prints one JSON object: the device class triple and bcdDevice, the interfaces of the active
// configuration (number, class/subclass/protocol), the Microsoft OS string descriptor (index 0xEE:
// signature and vendor code) and the Extended Compat ID descriptor (vendor request, wIndex 4:
// bFirstInterfaceNumber + compatible ID per function section). Layouts: USB 2.0 §9.6; Microsoft
// OS 1.0 descriptors specification (string 0xEE: "MSFT100" in UTF-16LE, then bMS_VendorCode;
// extended compat ID: 16-byte header, then 24-byte function sections).
'use strict';
const path = require('node:path');
const usb = require(path.join(__dirname, '..', '..', 'node_modules', 'usb'));

const serial = process.argv[2];
const ctl = (dev, type, req, value, index, len) =>
  new Promise((resolve, reject) => dev.controlTransfer(type, req, value, index, len, (e, d) => (e ? reject(e) : resolve(d))));
const str = (dev, i) => new Promise((resolve) => dev.getStringDescriptor(i, (e, s) => resolve(e ? undefined : s)));

(async () => {
  for (const dev of usb.getDeviceList()) {
    const d = dev.deviceDescriptor;
    if (d.iSerialNumber === 0) continue;
    dev.open();
    try {
      if ((await str(dev, d.iSerialNumber)) !== serial) continue;
      const out = {
        bDeviceClass: d.bDeviceClass,
        bDeviceSubClass: d.bDeviceSubClass,
        bDeviceProtocol: d.bDeviceProtocol,
        bcdDevice: d.bcdDevice,
        interfaces: dev.configDescriptor.interfaces.map((alts) => {
          const i = alts[0];
          return [i.bInterfaceNumber, i.bInterfaceClass, i.bInterfaceSubClass, i.bInterfaceProtocol];
        }),
      };
      // GET_DESCRIPTOR(STRING, 0xEE), language 0.
      const os = await ctl(dev, 0x80, 6, 0x03ee, 0, 18);
      out.osString = { signature: os.subarray(2, 16).toString('utf16le'), vendorCode: os[16] };
      // Vendor request (device recipient) bRequest = vendor code, wIndex 4: Extended Compat ID.
      const ext = await ctl(dev, 0xc0, os[16], 0, 4, 4096);
      const count = ext[8];
      out.compatIds = [];
      for (let k = 0; k < count; k++) {
        const s = ext.subarray(16 + 24 * k, 40 + 24 * k);
        out.compatIds.push({ firstInterface: s[0], compatibleId: s.subarray(2, 10).toString('latin1').replace(/\0+$/, '') });
      }
      console.log(JSON.stringify(out));
      return;
    } finally {
      dev.close();
    }
  }
  console.log(JSON.stringify({ error: `no USB device with serial ${serial}` }));
  process.exitCode = 1;
})().catch((e) => {
  console.log(JSON.stringify({ error: e.message }));
  process.exitCode = 1;
});
