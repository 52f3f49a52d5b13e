// Shared fixtures: a LogicalUnit on a MemStore behind a TargetPort, UA already consumed.

import { LogicalUnit, type LogicalUnitOptions } from '../../src/scsi/logical-unit';
import { TargetPort } from '../../src/scsi/port';
import { MemStore, cmd, nexus } from './helpers';

export async function fixture(opts: Partial<LogicalUnitOptions> = {}, size = 1024 * 512, storeOpts: { canUnmap?: boolean; volatileCache?: boolean } = {}) {
  const store = new MemStore('disk1', size, storeOpts);
  const lu = new LogicalUnit({ backstore: store, ...opts });
  const port = new TargetPort({ lunMap: () => [{ lun: 0, unit: lu }] });
  // Eat the power-on unit attention of the default nexus.
  await port.execute(cmd([0, 0, 0, 0, 0, 0]));
  return { store, lu, port, n1: nexus(1), n2: nexus(2) };
}
