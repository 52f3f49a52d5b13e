import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BotEpFiles,
  DescriptorError,
  encodeBotDescriptors,
  encodeBotStrings,
  encodeFfsStrings,
} from '../../../src/fabrics/usb/functionfs-descriptors';

/** Hex with spaces/comments stripped: `hex('09 04 // interface')`. */
const hex = (s: string): Buffer =>
  Buffer.from(
    s
      .split('\n')
      .map((l) => l.replace(/\/\/.*$/, ''))
      .join('')
      .replace(/\s+/g, ''),
    'hex',
  );

const INTERFACE = '09 04 00 00 02 08 06 50 01'; // bLength 9, INTERFACE, #0, alt 0, 2 eps, 08/06/50, iInterface 1

test('BOT descriptors v2: FS + HS + SS, byte for byte', () => {
  const expected = hex(`
    03 00 00 00   // magic FUNCTIONFS_DESCRIPTORS_MAGIC_V2
    69 00 00 00   // length 105 = whole blob
    07 00 00 00   // flags HAS_FS_DESC | HAS_HS_DESC | HAS_SS_DESC
    03 00 00 00   // fs_count: interface + 2 endpoints
    03 00 00 00   // hs_count
    05 00 00 00   // ss_count: interface + 2 x (endpoint + companion)
    ${INTERFACE}                  // full speed
    07 05 81 02 40 00 00          // EP 1 IN, bulk, wMaxPacketSize 64, bInterval 0
    07 05 02 02 40 00 00          // EP 2 OUT, bulk, 64
    ${INTERFACE}                  // high speed
    07 05 81 02 00 02 00          // EP 1 IN, bulk, 512
    07 05 02 02 00 02 00          // EP 2 OUT, bulk, 512
    ${INTERFACE}                  // super speed
    07 05 81 02 00 04 00          // EP 1 IN, bulk, 1024
    06 30 00 00 00 00             // SS companion: bMaxBurst 0, no streams, wBytesPerInterval 0
    07 05 02 02 00 04 00          // EP 2 OUT, bulk, 1024
    06 30 00 00 00 00
  `);
  const blob = encodeBotDescriptors();
  assert.is(blob.length, 105);
  assert.is(blob.toString('hex'), expected.toString('hex'));
});

test('BOT descriptors without SuperSpeed: flags 3, two counts', () => {
  const blob = encodeBotDescriptors({ superSpeed: false });
  assert.is(blob.readUInt32LE(0), 3);
  assert.is(blob.readUInt32LE(4), blob.length);
  assert.is(blob.readUInt32LE(8), 3); // HAS_FS_DESC | HAS_HS_DESC
  assert.is(blob.readUInt32LE(12), 3);
  assert.is(blob.readUInt32LE(16), 3);
  assert.is(blob.length, 12 + 8 + 2 * 23);
  // the first descriptor follows the two counts directly
  assert.is(blob.subarray(20, 29).toString('hex'), hex(INTERFACE).toString('hex'));
});

test('BOT descriptors: endpoint numbers, burst and string index are honoured', () => {
  const blob = encodeBotDescriptors({ inEndpoint: 3, outEndpoint: 4, iInterface: 0, ssMaxBurst: 15 });
  assert.is(blob[24 + 8], 0); // iInterface of the FS interface descriptor
  assert.is(blob[24 + 9 + 2], 0x83); // IN address
  assert.is(blob[24 + 16 + 2], 0x04); // OUT address
  const ssCompanion = blob.indexOf(Buffer.from([6, 0x30]));
  assert.is(blob[ssCompanion + 2], 15);
});

test('BOT descriptors: bad options are typed errors', () => {
  for (const [opts, code] of [
    [{ inEndpoint: 0 }, 'BAD_ENDPOINT'],
    [{ outEndpoint: 16 }, 'BAD_ENDPOINT'],
    [{ inEndpoint: 2, outEndpoint: 2 }, 'BAD_ENDPOINT'],
    [{ iInterface: 256 }, 'BAD_STRING_INDEX'],
    [{ ssMaxBurst: 16 }, 'BAD_BURST'],
  ] as const) {
    try {
      encodeBotDescriptors(opts);
      assert.unreachable(JSON.stringify(opts));
    } catch (e) {
      assert.instance(e, DescriptorError);
      assert.is((e as DescriptorError).code, code);
    }
  }
});

test('strings blob: magic 2, one language 0x0409, NUL-terminated UTF-8', () => {
  const expected = hex(`
    02 00 00 00   // FUNCTIONFS_STRINGS_MAGIC
    26 00 00 00   // length 38
    01 00 00 00   // str_count
    01 00 00 00   // lang_count
    09 04         // LANGID 0x0409 English (US), little-endian
    ${Buffer.from('lunbox mass storage\0').toString('hex')}
  `);
  assert.is(encodeBotStrings().toString('hex'), expected.toString('hex'));
});

test('strings blob: two languages, UTF-8 bytes counted, no strings means both counts 0', () => {
  const b = encodeFfsStrings([
    { code: 0x0409, strings: ['a', 'é'] },
    { code: 0x0407, strings: ['b', 'ü'] },
  ]);
  assert.is(b.readUInt32LE(4), b.length);
  assert.is(b.readUInt32LE(8), 2);
  assert.is(b.readUInt32LE(12), 2);
  assert.is(b.subarray(16).toString('hex'), '0904' + '6100' + 'c3a900' + '0704' + '6200' + 'c3bc00');
  const empty = encodeFfsStrings([]);
  assert.is(empty.toString('hex'), '02000000' + '10000000' + '00000000' + '00000000');
});

test('strings blob: mismatched counts and NUL are typed errors', () => {
  assert.throws(
    () => encodeFfsStrings([{ code: 0x409, strings: ['a'] }, { code: 0x407, strings: [] }]),
    (e: unknown) => e instanceof DescriptorError && e.code === 'STRING_COUNT_MISMATCH',
  );
  assert.throws(
    () => encodeFfsStrings([{ code: 0x409, strings: ['a\0b'] }]),
    (e: unknown) => e instanceof DescriptorError && e.code === 'NUL_IN_STRING',
  );
  assert.throws(
    () => encodeFfsStrings([{ code: 0x10000, strings: ['a'] }]),
    (e: unknown) => e instanceof DescriptorError && e.code === 'BAD_LANGID',
  );
});

test('endpoint files follow declaration order: IN is ep1, OUT is ep2', () => {
  assert.equal(BotEpFiles, { bulkIn: 'ep1', bulkOut: 'ep2' });
});

test.run();
