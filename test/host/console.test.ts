import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { findLunboxPort, pickLunboxPort } from '../../src/host/console';

test('the lunbox ACM port is found by USB ids and manufacturer', () => {
  const ports = [
    { path: '/dev/ttyS0' },
    { path: '/dev/ttyACM0', vendorId: '2341', productId: '0043', manufacturer: 'Arduino' },
    { path: '/dev/ttyACM1', vendorId: '1D6B', productId: '0104', manufacturer: 'lunbox' },
  ];
  assert.is(pickLunboxPort(ports).path, '/dev/ttyACM1');
  assert.is(pickLunboxPort([{ path: '/dev/ttyACM3', vendorId: '1234', productId: '5678', manufacturer: 'lunbox' }]).path, '/dev/ttyACM3');
  assert.is(pickLunboxPort([{ path: '/dev/cu.usbmodem1', vendorId: '1d6b', productId: '0104' }]).path, '/dev/cu.usbmodem1');
});

test('no lunbox port: the error lists what was seen and how to choose', async () => {
  assert.throws(() => pickLunboxPort([{ path: '/dev/ttyUSB0', vendorId: '0403', productId: '6001', manufacturer: 'FTDI' }]), /no lunbox serial console found.*\/dev\/ttyUSB0 \(0403:6001 FTDI\).*lunbox console \/dev\/ttyACM0/);
  assert.is(await findLunboxPort(async () => [{ path: '/dev/ttyACM9', vendorId: '1d6b', productId: '0104' }]), '/dev/ttyACM9');
});

test.run();
