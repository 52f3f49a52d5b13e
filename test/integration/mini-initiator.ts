// A deliberately small iSCSI initiator for integration tests that need what libiscsi's
// command-line tools cannot do: keep one session open across a change, or send CDBs the
// tools have no command for (PERSISTENT RESERVE OUT). Written from RFC 7143 §11 byte
// layouts, independent of lunbox's own PDU codec. Session parameters stay at the RFC
// defaults (ImmediateData=Yes, InitialR2T=Yes, FirstBurstLength 64 KiB), so data-out up to
// 64 KiB goes as immediate data and needs no R2T handling.
import { connect } from 'node:net';
import type { Socket } from 'node:net';

export interface CommandResult {
  readonly status: number;
  readonly data: Buffer;
  /** Sense data (without the 2-byte SenseLength prefix), empty when none. */
  readonly sense: Buffer;
}

const pad4 = (n: number): number => (n + 3) & ~3;

export class MiniInitiator {
  private sock!: Socket;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private closed = false;
  private cmdSN = 1;
  private expStatSN = 0;
  private itt = 1;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly initiatorName: string,
    /** ISID (6 bytes): same name + ISID = same I_T nexus across reconnects. */
    readonly isid = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]),
  ) {}

  async login(targetName: string): Promise<void> {
    this.sock = connect(this.port, this.host);
    this.sock.setNoDelay(true);
    this.sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    await new Promise<void>((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
    const text = Buffer.from(
      [`InitiatorName=${this.initiatorName}`, 'SessionType=Normal', `TargetName=${targetName}`, 'HeaderDigest=None', 'DataDigest=None']
        .map((kv) => kv + '\0')
        .join(''),
    );
    // §11.12 Login Request: immediate, T=1, CSG=1 (operational), NSG=3 (full feature).
    const bhs = Buffer.alloc(48);
    bhs[0] = 0x43;
    bhs[1] = 0x80 | (1 << 2) | 3;
    bhs.writeUIntBE(text.length, 5, 3);
    this.isid.copy(bhs, 8);
    bhs.writeUInt32BE(this.itt++, 16);
    bhs.writeUInt32BE(this.cmdSN, 24);
    this.send(bhs, text);
    const rsp = await this.readPdu();
    const status = rsp.bhs.readUInt16BE(36);
    if ((rsp.bhs[0]! & 0x3f) !== 0x23 || status !== 0) throw new Error(`login failed: opcode 0x${rsp.bhs[0]!.toString(16)} status 0x${status.toString(16)}`);
    if ((rsp.bhs[1]! & 0x83) !== 0x83) throw new Error('login did not reach full feature phase in one step');
    this.expStatSN = (rsp.bhs.readUInt32BE(24) + 1) >>> 0;
  }

  /** One SCSI command; data-out (≤ 64 KiB) goes as immediate data. */
  async command(cdb: Buffer | readonly number[], opts: { lun?: number; dataOut?: Buffer; dataIn?: number } = {}): Promise<CommandResult> {
    const c = Buffer.alloc(16);
    Buffer.from(cdb as Buffer).copy(c);
    const out = opts.dataOut ?? Buffer.alloc(0);
    const inLen = opts.dataIn ?? 0;
    const itt = this.itt++;
    // §11.3 SCSI Command: F, R, W, ATTR=simple(1); LUN 8; ITT 16; EDTL 20; CmdSN 24; ExpStatSN 28; CDB 32.
    const bhs = Buffer.alloc(48);
    bhs[0] = 0x01;
    bhs[1] = 0x80 | (inLen > 0 ? 0x40 : 0) | (out.length > 0 ? 0x20 : 0) | 1;
    bhs.writeUIntBE(out.length, 5, 3);
    bhs.writeUInt16BE(opts.lun ?? 0, 8); // single-level flat-ish LUN for LUNs < 256
    bhs.writeUInt32BE(itt, 16);
    bhs.writeUInt32BE(out.length > 0 ? out.length : inLen, 20);
    bhs.writeUInt32BE(this.cmdSN++, 24);
    bhs.writeUInt32BE(this.expStatSN, 28);
    c.copy(bhs, 32);
    this.send(bhs, out);
    const data: Buffer[] = [];
    for (;;) {
      const p = await this.readPdu();
      const op = p.bhs[0]! & 0x3f;
      if (op === 0x20) continue; // NOP-In ping: not answered, the test is short
      if (op === 0x32) continue; // Async Message
      if (p.bhs.readUInt32BE(16) !== itt) continue;
      if (op === 0x25) {
        // §11.7 Data-In: with S set it carries the status.
        data.push(p.data);
        if (p.bhs[1]! & 0x01) {
          this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
          return { status: p.bhs[3]!, data: Buffer.concat(data), sense: Buffer.alloc(0) };
        }
        continue;
      }
      if (op === 0x21) {
        // §11.4 SCSI Response: status at byte 3; sense data after a 2-byte SenseLength.
        this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        const senseLen = p.data.length >= 2 ? p.data.readUInt16BE(0) : 0;
        return { status: p.bhs[3]!, data: Buffer.concat(data), sense: p.data.subarray(2, 2 + senseLen) };
      }
      throw new Error(`unexpected PDU opcode 0x${op.toString(16)}`);
    }
  }

  close(): void {
    this.sock?.destroy();
  }

  private send(bhs: Buffer, data: Buffer): void {
    const padded = Buffer.alloc(pad4(data.length));
    data.copy(padded);
    this.sock.write(Buffer.concat([bhs, padded]));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async readPdu(): Promise<{ bhs: Buffer; data: Buffer }> {
    for (;;) {
      if (this.buf.length >= 48) {
        const ahs = this.buf[4]! * 4;
        const dlen = this.buf.readUIntBE(5, 3);
        const total = 48 + ahs + pad4(dlen);
        if (this.buf.length >= total) {
          const bhs = Buffer.from(this.buf.subarray(0, 48));
          const data = Buffer.from(this.buf.subarray(48 + ahs, 48 + ahs + dlen));
          this.buf = this.buf.subarray(total);
          return { bhs, data };
        }
      }
      if (this.closed) throw new Error('connection closed by the target');
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }
}

/** Sense key / ASC / ASCQ of fixed or descriptor sense data. */
export function senseKey(sense: Buffer): { key: number; asc: number; ascq: number } {
  const code = (sense[0] ?? 0) & 0x7f;
  if (code === 0x72 || code === 0x73) return { key: (sense[1] ?? 0) & 0x0f, asc: sense[2] ?? 0, ascq: sense[3] ?? 0 };
  return { key: (sense[2] ?? 0) & 0x0f, asc: sense[12] ?? 0, ascq: sense[13] ?? 0 };
}
