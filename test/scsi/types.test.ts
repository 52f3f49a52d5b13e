import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Status } from '../../src/scsi/types';

// SAM-5 §5.3 status byte values.
test('status codes match SAM-5', () => {
  assert.is(Status.GOOD, 0x00);
  assert.is(Status.CHECK_CONDITION, 0x02);
  assert.is(Status.RESERVATION_CONFLICT, 0x18);
  assert.is(Status.TASK_ABORTED, 0x40);
});

test.run();
