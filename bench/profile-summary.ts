/**
 * Summarizes V8 CPU profiles (.cpuprofile, as written by `node --cpu-prof` or `npm run bench --
 * --profile`): self time by cost centre, by package / area, by owner and by function.
 * `npm run bench -- --profile` profiles the API and worker around each phase and prints this for
 * both; it also works alone:
 *
 *   npx ts-node --transpile-only bench/profile-summary.ts bench/results/profiles-<ts>/*.cpuprofile
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  byArea: [string, number][];
  /** self time of Node internals and native code charged to the nearest npm package / app file that called them */
  byOwner: [string, number][];
  byFunction: [string, number][];
  /** owners grouped into the pipeline's cost centres */
  byCategory: [string, number][];
}

/** Cost centres of the pipeline, by owner (see byOwner). */
export function categoryOf(owner: string): string {
  if (
    owner === 'ioredis' ||
    owner === 'redis-errors' ||
    owner === 'redis-parser' ||
    owner === 'denque' ||
    owner === 'cluster-key-slot' ||
    owner.startsWith('@ioredis/')
  )
    return 'Redis client (ioredis, incl. its socket writes)';
  if (
    /^(ws|engine\.io|engine\.io-parser|socket\.io|socket\.io-parser|socket\.io-adapter|@socket\.io\/.*|@nestjs\/platform-socket\.io|@nestjs\/websockets)$/.test(
      owner,
    )
  )
    return 'Socket.IO / WebSocket delivery';
  if (
    /^(express|router|body-parser|raw-body|helmet|pino-http|pino|on-finished|finalhandler|send|serve-static|cors|class-validator|class-transformer|validator|qs|iconv-lite|type-is|content-type|@nestjs\/.*|nestjs-pino|reflect-metadata|path-to-regexp|rxjs|express-.*|prom-client)$/.test(
      owner,
    )
  )
    return 'HTTP / Nest / validation / logging / metrics';
  if (
    owner === 'ollama' ||
    owner === 'app: ai/providers/ollama.provider.js' ||
    owner.startsWith('wasm://') ||
    owner === 'node:deps' ||
    owner === 'node:webstreams' ||
    owner === 'whatwg-fetch'
  )
    return 'Ollama client streaming (fetch/undici, NDJSON parse)';
  if (owner === '(garbage collector)') return 'garbage collection';
  if (owner.startsWith('app: ')) return 'app code (own frames)';
  return 'other (Node internals, timers, native code without a JS caller)';
}

/** Where a frame's code lives: an npm package, a part of Node, the app's own file, or a V8 pseudo-frame. */
export function areaOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/');
    return `node:${parts[0] === 'internal' ? parts.slice(1, 2).join('/') : parts[0]}`;
  }
  const dist = url.search(/\/(dist|\.dist)\//);
  if (dist >= 0) return `app: ${url.slice(dist).replace(/^\/(\.?dist)\//, '')}`;
  return url;
}

export function summarizeProfile(file: string, top = 20): ProfileSummary {
  return summarizeProfileData(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, file, top);
}

export function summarizeProfileData(profile: CpuProfile, file: string, top = 20): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const ownerCache = new Map<number, string>();
  const isOwner = (a: string) => !a.startsWith('node:') && !a.startsWith('(');
  const ownerOf = (id: number): string => {
    const cached = ownerCache.get(id);
    if (cached) return cached;
    const node = byId.get(id);
    let owner: string;
    if (!node) owner = '(unknown)';
    else {
      const a = areaOf(node.callFrame.url, node.callFrame.functionName);
      const up = parent.get(id);
      owner = isOwner(a)
        ? a
        : up === undefined
          ? a
          : (() => {
              const o = ownerOf(up);
              return isOwner(o) ? o : a;
            })();
    }
    ownerCache.set(id, owner);
    return owner;
  };
  const self = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; attribute it to that sample's node.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  const area = new Map<string, number>();
  const owner = new Map<string, number>();
  const category = new Map<string, number>();
  const fn = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    total += ms;
    if (functionName === '(idle)') {
      idle += ms;
      continue;
    }
    const a = areaOf(url, functionName);
    area.set(a, (area.get(a) ?? 0) + ms);
    const o = ownerOf(id);
    owner.set(o, (owner.get(o) ?? 0) + ms);
    const c = categoryOf(o);
    category.set(c, (category.get(c) ?? 0) + ms);
    const where = url ? `${areaOf(url, functionName)}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'} ${where}`.trim();
    fn.set(key, (fn.get(key) ?? 0) + ms);
  }
  const sorted = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((x, y) => y[1] - x[1])
      .slice(0, top)
      .map(([k, v]) => [k, Math.round(v)] as [string, number]);
  return {
    file,
    totalMs: Math.round(total),
    busyMs: Math.round(total - idle),
    byArea: sorted(area),
    byOwner: sorted(owner),
    byFunction: sorted(fn),
    byCategory: sorted(category),
  };
}

export function renderProfile(s: ProfileSummary, label: string): string {
  const pct = (ms: number) => `${((ms / Math.max(1, s.busyMs)) * 100).toFixed(1).padStart(5)}%`;
  const lines = [`${label}: ${s.busyMs} ms busy of ${s.totalMs} ms sampled (${s.file})`];
  lines.push('  by cost centre:');
  for (const [k, v] of s.byCategory) lines.push(`    ${pct(v)}  ${k}`);
  lines.push('  by package / area (self time, % of busy):');
  for (const [k, v] of s.byArea) lines.push(`    ${pct(v)}  ${k}`);
  lines.push('  by owner (Node internals and native code charged to the package or app file that called them):');
  for (const [k, v] of s.byOwner) lines.push(`    ${pct(v)}  ${k}`);
  lines.push('  top functions (self time):');
  for (const [k, v] of s.byFunction) lines.push(`    ${pct(v)}  ${k}`);
  return lines.join('\n');
}

if (require.main === module) {
  for (const file of process.argv.slice(2)) console.log(renderProfile(summarizeProfile(file, 25), file.split('/').pop() ?? file), '\n');
}
