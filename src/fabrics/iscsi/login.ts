// The login phase (RFC 7143 §6.3, §11.12, §11.13) as a pure state machine: one decoded
// Login Request (with its joined key=value text) in, one Login Response description out.
// Stages: security (CSG 0) → operational (CSG 1) → full feature (NSG 3), driven by the
// initiator's T bit; the target transits only when the initiator asks and it is satisfied.

import { ChapAuthenticator, ChapError, type ChapCredentials } from './chap';
import { LOGIN_KEYS, Negotiator, resolveTargetParams, type IscsiTargetParams, type Negotiated } from './negotiation';
import { LoginStatus, Stage, type LoginRequest } from './pdu';
import type { TextPair } from './text';
import { authFor, initiatorAllowed, type IscsiTargetDef } from './types';

export const ISCSI_VERSION = 0x00; // §11.12.4: the only version defined

export interface LoginContext {
  /** The target named `name` as reached through the local portal `local` (its TPG). */
  lookupTarget(name: string, local?: { address: string; port: number }): IscsiTargetDef | undefined;
  readonly discoveryAuth: ChapCredentials | undefined;
  /** Params for discovery sessions (no target to take them from). */
  readonly discoveryParams?: Partial<IscsiTargetParams>;
  readonly random?: (n: number) => Buffer;
}

export type LoginStep =
  | { readonly kind: 'respond'; readonly transit: boolean; readonly csg: number; readonly nsg: number; readonly pairs: TextPair[] }
  | { readonly kind: 'complete'; readonly csg: number; readonly pairs: TextPair[] }
  | { readonly kind: 'fail'; readonly status: number; readonly reason: string };

export type LoginStageName = 'security' | 'operational' | 'done' | 'failed';

export class LoginMachine {
  stage: LoginStageName = 'security';
  initiatorName = '';
  initiatorAlias: string | undefined;
  targetName = '';
  sessionType: 'Normal' | 'Discovery' = 'Normal';
  target: IscsiTargetDef | undefined;
  params: IscsiTargetParams = resolveTargetParams(undefined);
  isid: Buffer = Buffer.alloc(6);
  tsih = 0;
  cid = 0;
  cmdSN = 0;
  itt = 0;
  /** Did a Login Response carry our MaxRecvDataSegmentLength (§13.12)? */
  declaredMrdsl = false;

  private first = true;
  private negotiator: Negotiator | undefined;
  private auth: ChapCredentials | undefined;
  private authMethod: 'None' | 'CHAP' | undefined;
  private chap: ChapAuthenticator | undefined;

  constructor(private readonly ctx: LoginContext) {}

  get negotiated(): Negotiated {
    return this.negotiator!.result();
  }

  process(req: LoginRequest, pairs: readonly TextPair[]): LoginStep {
    try {
      return this.step(req, pairs);
    } catch (e) {
      if (e instanceof ChapError) return this.fail(LoginStatus.AUTH_FAILURE, e.message);
      throw e;
    }
  }

  private fail(status: number, reason: string): LoginStep {
    this.stage = 'failed';
    return { kind: 'fail', status, reason };
  }

  private step(req: LoginRequest, pairs: readonly TextPair[]): LoginStep {
    if (this.stage === 'done' || this.stage === 'failed') return this.fail(LoginStatus.INITIATOR_ERROR, 'login already finished');
    const keys = new Map<string, string>();
    for (const [k, v] of pairs) {
      if (keys.has(k)) return this.fail(LoginStatus.INITIATOR_ERROR, `key ${k} sent twice`);
      keys.set(k, v);
    }
    const out: TextPair[] = [];

    if (this.first) {
      this.first = false;
      // §11.12.4: Version-min above what we speak → 0x0205.
      if (req.versionMin > ISCSI_VERSION) return this.fail(LoginStatus.UNSUPPORTED_VERSION, `version-min ${req.versionMin}`);
      this.isid = req.isid;
      this.tsih = req.tsih;
      this.cid = req.cid;
      this.cmdSN = req.cmdSN;
      this.itt = req.itt;
      const iname = keys.get('InitiatorName');
      if (iname === undefined || iname === '') return this.fail(LoginStatus.MISSING_PARAMETER, 'InitiatorName missing');
      this.initiatorName = iname;
      this.initiatorAlias = keys.get('InitiatorAlias');
      const st = keys.get('SessionType') ?? 'Normal';
      if (st !== 'Normal' && st !== 'Discovery') return this.fail(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, `SessionType=${st}`);
      this.sessionType = st;
      if (st === 'Normal') {
        const tname = keys.get('TargetName');
        if (tname === undefined || tname === '') return this.fail(LoginStatus.MISSING_PARAMETER, 'TargetName missing');
        this.targetName = tname;
        const t = this.ctx.lookupTarget(tname);
        if (t === undefined) return this.fail(LoginStatus.NOT_FOUND, `target ${tname} not found`);
        if (!initiatorAllowed(t, iname)) return this.fail(LoginStatus.AUTHORIZATION_FAILURE, `${iname} is not in the ACL of ${tname}`);
        this.target = t;
        this.params = resolveTargetParams(t.params);
        this.auth = authFor(t, iname);
        // §13.9: TargetPortalGroupTag goes in the first Login Response.
        out.push(['TargetPortalGroupTag', String(t.tpgt)]);
        if (t.alias !== undefined && t.alias !== '') out.push(['TargetAlias', t.alias]);
      } else {
        this.params = resolveTargetParams(this.ctx.discoveryParams);
        this.auth = this.ctx.discoveryAuth;
      }
      this.negotiator = new Negotiator(this.params, st === 'Discovery');
      if (req.csg === Stage.OPERATIONAL) {
        // Skipping the security stage is only allowed when no authentication is configured.
        if (this.auth !== undefined) return this.fail(LoginStatus.AUTH_FAILURE, 'authentication required but security stage skipped');
        this.stage = 'operational';
      }
    } else if (req.isid.compare(this.isid) !== 0 || req.tsih !== this.tsih) {
      return this.fail(LoginStatus.INITIATOR_ERROR, 'ISID/TSIH changed during login');
    }

    // §11.12.3: CSG must name the stage we are in; full feature is never a current stage.
    const cur = this.stage === 'security' ? Stage.SECURITY : Stage.OPERATIONAL;
    if (req.csg !== cur) {
      if (req.csg === Stage.OPERATIONAL && this.stage === 'security' && this.auth !== undefined) {
        return this.fail(LoginStatus.AUTH_FAILURE, 'authentication required but security stage skipped');
      }
      return this.fail(LoginStatus.INITIATOR_ERROR, `CSG ${req.csg} while in ${this.stage} stage`);
    }
    if (req.transit && (req.nsg === 2 || req.nsg <= req.csg)) return this.fail(LoginStatus.INITIATOR_ERROR, `bad NSG ${req.nsg} from CSG ${req.csg}`);

    const negotiator = this.negotiator!;
    for (const [k, v] of keys) {
      if (LOGIN_KEYS.has(k)) {
        if (k === 'AuthMethod') {
          if (this.stage !== 'security') return this.fail(LoginStatus.INITIATOR_ERROR, 'AuthMethod outside the security stage');
          const offered = v.split(',');
          if (this.auth !== undefined) {
            if (!offered.includes('CHAP')) return this.fail(LoginStatus.AUTH_FAILURE, `CHAP required, initiator offers ${v}`);
            this.authMethod = 'CHAP';
            this.chap = new ChapAuthenticator(this.auth, this.ctx.random);
          } else {
            if (!offered.includes('None')) return this.fail(LoginStatus.AUTH_FAILURE, `no authentication configured, initiator offers ${v}`);
            this.authMethod = 'None';
          }
          out.push(['AuthMethod', this.authMethod]);
        }
        continue; // names and CHAP_* are consumed above/below
      }
      const r = negotiator.handle(k, v);
      if (r === 'duplicate') return this.fail(LoginStatus.INITIATOR_ERROR, `key ${k} negotiated twice`);
      if (r !== null) out.push(r);
    }

    if (this.stage === 'security' && this.chap !== undefined) {
      out.push(...this.chap.step(keys));
    } else if (this.stage === 'security' && this.auth !== undefined && (keys.has('CHAP_A') || keys.has('CHAP_R'))) {
      return this.fail(LoginStatus.AUTH_FAILURE, 'CHAP keys before AuthMethod=CHAP');
    }
    const authOk = this.auth === undefined || (this.chap?.done ?? false);

    // Declare our MaxRecvDataSegmentLength in an operational-stage response (§13.12); an
    // initiator that skips that stage leaves both sides at the 8192 default.
    if (this.stage === 'operational' && !this.declaredMrdsl) {
      out.push(...negotiator.declarations());
      this.declaredMrdsl = true;
    }

    if (!req.transit) return { kind: 'respond', transit: false, csg: req.csg, nsg: req.nsg, pairs: out };
    if (this.stage === 'security' && !authOk) {
      // The initiator wants to move on but CHAP is not finished: with no CHAP under way that is a failure.
      if (this.chap === undefined) return this.fail(LoginStatus.AUTH_FAILURE, 'authentication required');
      return { kind: 'respond', transit: false, csg: req.csg, nsg: req.nsg, pairs: out };
    }
    if (req.nsg === Stage.FULL_FEATURE) {
      this.stage = 'done';
      return { kind: 'complete', csg: req.csg, pairs: out };
    }
    this.stage = 'operational';
    return { kind: 'respond', transit: true, csg: req.csg, nsg: req.nsg, pairs: out };
  }
}
