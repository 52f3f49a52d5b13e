// The transport-independent SCSI core: logical units, target ports, sense helpers.

export { LogicalUnit, type LogicalUnitOptions, type ResolvedLogicalUnitOptions } from './logical-unit';
export { TargetPort, type LunMapEntry, type TargetPortOptions } from './port';
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
export * from './types';
