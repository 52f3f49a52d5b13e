// The transport-independent SCSI core: logical units, target ports, sense helpers.

export { LogicalUnit, type LogicalUnitOptions, type ResolvedLogicalUnitOptions } from './logical-unit';
export { TargetPort, type LunMapEntry, type TargetPortOptions } from './port';
export { AluaGroups, AluaConfigError, type AluaMode, type AluaOptions, type AluaState, type PortGroupConfig } from './spc/alua';
export {
  Asc,
  SenseKey,
  decodeSense,
  encodeDescriptorSense,
  encodeFixedSense,
  encodeSense,
  type SenseSpec,
} from './sense';
export { Op, ServiceAction } from './cdb';
export { MemoryPrStore, usePrStore, type PrRegistration, type PrState, type PrStore } from './spc/persistent-reservations';
export * from './types';
