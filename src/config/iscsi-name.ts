// iSCSI names (RFC 7143 §4.2.7, RFC 3722 stringprep profile). Checked as an admin would
// type them: already lowercase, since stringprep folds case and the name on the wire must match.

const LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?';
const IQN_RE = new RegExp(`^iqn\\.(\\d{4})-(\\d{2})\\.${LABEL}(?:\\.${LABEL})*(?::.+)?$`);
const EUI_RE = /^eui\.[0-9a-f]{16}$/;
const NAA_RE = /^naa\.(?:[0-9a-f]{16}|[0-9a-f]{32})$/;
// RFC 7143 §4.2.7.1: an iSCSI name is at most 223 bytes (UTF-8).
const MAX_NAME_BYTES = 223;
const FORMS = "iqn.YYYY-MM.reverse.domain[:anything], eui. + 16 hex digits, or naa. + 16 or 32 hex digits";

/** Why `name` is not a valid iSCSI name, or undefined when it is. */
export function iscsiNameProblem(name: string): string | undefined {
  if (name.length === 0) return `empty iSCSI name: expected ${FORMS}`;
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `iSCSI name is ${Buffer.byteLength(name)} bytes, the limit is ${MAX_NAME_BYTES}`;
  if (/[A-Z]/.test(name)) {
    return `iSCSI names are lowercase (RFC 3722 stringprep folds case): write '${name.toLowerCase()}'`;
  }
  // RFC 3722 §6: of ASCII only letters, digits, '-', '.' and ':' are allowed.
  const bad = [...name].find((c) => c.charCodeAt(0) < 0x80 && !/[a-z0-9.:-]/.test(c));
  if (bad !== undefined) return `character ${JSON.stringify(bad)} is not allowed in an iSCSI name (ASCII allows a-z, 0-9, '-', '.', ':')`;
  if (name.startsWith('iqn.')) {
    const m = IQN_RE.exec(name);
    if (!m) return `bad iqn name '${name}': expected ${FORMS}`;
    const month = Number(m[2]);
    if (month < 1 || month > 12) return `bad iqn name '${name}': month ${m[2]} is not 01..12`;
    return undefined;
  }
  if (name.startsWith('eui.')) return EUI_RE.test(name) ? undefined : `bad eui name '${name}': expected eui. + 16 hex digits`;
  if (name.startsWith('naa.')) return NAA_RE.test(name) ? undefined : `bad naa name '${name}': expected naa. + 16 or 32 hex digits`;
  return `bad iSCSI name '${name}': expected ${FORMS}`;
}
