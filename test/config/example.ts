// A full, valid configuration shared by the config tests (not itself a test file).
import type { LunboxConfig } from '../../src/config';

export function fullExample(): LunboxConfig {
  return {
    version: 1,
    backstores: [
      { name: 'ram0', type: 'ram', size: '64M', thinProvisioning: true },
      { name: 'disk1', type: 'file', path: '/var/lib/lunbox/disk1.img', size: 1073741824, blockSize: 4096, writeCache: true, vendor: 'LUNBOX', product: 'Disk One', revision: '0001', serial: 'd1-0001' },
      { name: 'sd', type: 'block', path: '/dev/mmcblk0p3', readOnly: true },
    ],
    iscsi: {
      portals: [{ address: '0.0.0.0', port: 3260 }, { address: '::' }],
      discoveryAuth: { userid: 'disc', password: 'discovery-secret' },
      targets: [
        {
          iqn: 'iqn.2024-01.org.lunbox:disk1',
          alias: 'first disk',
          tpgt: 1,
          luns: [
            { lun: 0, backstore: 'disk1' },
            { lun: 1, backstore: 'ram0' },
            { lun: 2, backstore: 'sd', readOnly: true },
          ],
          acls: [
            {
              initiator: 'iqn.1993-08.org.debian:01:abcdef012345',
              auth: { userid: 'alice', password: 'alice-secret-1', mutualUserid: 'target', mutualPassword: 'target-secret-1' },
              luns: [{ lun: 0, targetLun: 1 }, { lun: 1, targetLun: 0, readOnly: true }],
            },
            { initiator: 'eui.0123456789abcdef' },
          ],
          demoMode: false,
          params: {
            maxRecvDataSegmentLength: 262144,
            maxBurstLength: 1048576,
            firstBurstLength: 65536,
            immediateData: true,
            initialR2T: false,
            maxOutstandingR2T: 1,
            headerDigest: ['CRC32C', 'None'],
            dataDigest: ['None'],
            nopInInterval: 15,
            nopInTimeout: 30,
          },
        },
        { iqn: 'naa.6001405abcdef0123456789abcdef012', portals: [{ address: '127.0.0.1', port: 3261 }, { address: 'localhost' }], luns: [{ lun: 16383, backstore: 'ram0' }] },
      ],
    },
    usb: { gadget: { vendorId: 0x1d6b, acm: true }, luns: [{ lun: 0, backstore: 'ram0' }] },
    engine: {},
  };
}
