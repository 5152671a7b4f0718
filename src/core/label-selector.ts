import { BadRequestError } from './errors.ts';

/**
 * Label selectors with Kubernetes' syntax (apimachinery's labels.Parse), for choosing sites by
 * their labels: requirements separated by commas, all of which must hold —
 * `k=v` / `k==v` (equal), `k!=v` (absent or different), `k in (a,b)`, `k notin (a,b)` (absent
 * or none of them), `k` (present), `!k` (absent). The empty selector matches every site.
 */
export type Requirement =
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'absent' };

export interface LabelSelector {
  /** As given (normalised: no extra spaces). */
  text: string;
  requirements: Requirement[];
}

/** A label key: an optional DNS-subdomain prefix and '/', then a name of 1-63 characters. */
const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A label value: empty, or like a name. */
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function checkKey(key: string, field: string): string {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (!NAME.test(name) || (prefix !== undefined && (prefix.length > 253 || !PREFIX.test(prefix)))) {
    throw new BadRequestError(`${field}: "${key}" is not a label key (an optional DNS prefix and "/", then 1-63 letters, digits, "-", "_" or "." starting and ending with a letter or digit).`);
  }
  return key;
}

function checkValue(value: string, field: string): string {
  if (!VALUE.test(value)) throw new BadRequestError(`${field}: "${value}" is not a label value (at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit).`);
  return value;
}

/** Splits on the commas that are not inside parentheses. */
function splitRequirements(text: string, field: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')') depth--;
    if (depth < 0 || depth > 1) throw new BadRequestError(`${field}: unbalanced parentheses in "${text}".`);
    if (text[i] === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new BadRequestError(`${field}: unbalanced parentheses in "${text}".`);
  parts.push(text.slice(start));
  return parts.map((p) => p.trim());
}

/** Parses a selector; BadRequestError naming `field` and what is wrong. */
export function parseLabelSelector(text: string, field = 'selector'): LabelSelector {
  if (typeof text !== 'string') throw new BadRequestError(`${field} must be a string (a label selector such as "region=eu,tier!=far").`);
  if (text.trim() === '') return { text: '', requirements: [] };
  const requirements: Requirement[] = [];
  for (const part of splitRequirements(text, field)) {
    if (part === '') throw new BadRequestError(`${field}: an empty requirement in "${text}".`);
    let m: RegExpExecArray | null;
    if ((m = /^!\s*([^\s!=(),]+)$/.exec(part)) !== null) {
      requirements.push({ key: checkKey(m[1]!, field), op: 'absent' });
    } else if ((m = /^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(part)) !== null) {
      const values = m[3]!.split(',').map((v) => checkValue(v.trim(), field));
      requirements.push({ key: checkKey(m[1]!, field), op: m[2] as 'in' | 'notin', values: [...new Set(values)].sort() });
    } else if ((m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part)) !== null) {
      const key = checkKey(m[1]!, field);
      const value = checkValue(m[3]!, field);
      requirements.push({ key, op: m[2] === '!=' ? 'notin' : 'in', values: [value] });
    } else if ((m = /^([^\s!=(),]+)$/.exec(part)) !== null) {
      requirements.push({ key: checkKey(m[1]!, field), op: 'exists' });
    } else {
      throw new BadRequestError(`${field}: "${part}" is not a requirement (k=v, k!=v, k in (a,b), k notin (a,b), k or !k).`);
    }
  }
  return { text: requirements.map(requirementText).join(','), requirements };
}

function requirementText(r: Requirement): string {
  switch (r.op) {
    case 'exists': return r.key;
    case 'absent': return `!${r.key}`;
    default: return r.values.length === 1 ? `${r.key}${r.op === 'in' ? '=' : '!='}${r.values[0]}` : `${r.key} ${r.op} (${r.values.join(',')})`;
  }
}

/** Whether a site's labels satisfy every requirement. */
export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  return selector.requirements.every((r) => {
    const has = Object.hasOwn(labels, r.key);
    switch (r.op) {
      case 'exists': return has;
      case 'absent': return !has;
      case 'in': return has && r.values.includes(labels[r.key]!);
      case 'notin': return !has || !r.values.includes(labels[r.key]!);
    }
  });
}
