/**
 * The doc blocks of README.md, docs/*.md and examples/*\/README.md, as programs: the
 * parser, the one strict `tsc` run over every TypeScript/JavaScript block (errors mapped
 * back to the doc's file:line), and the runners (tsx per block, the CLI through a shim).
 * The conventions are docs/CONTRIBUTING.md's "Doc blocks are tests".
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Languages compiled by tsc and run by tsx. */
const CODE = new Set(['ts', 'typescript', 'js', 'javascript']);
/** Languages shown, never run: output, grammar, configuration of other tools. */
export const SHOWN = new Set(['text', 'http', 'nginx', 'promql', 'python', 'yaml', 'ini', 'diff', 'html', 'css']);
/** Flags an info string may carry after the language. */
const FLAGS = new Set(['continued', 'serves', 'redis', 'server', 'fails']);

/** One fenced block of a doc. */
export interface DocBlock {
  /** The doc, relative to the repository (`docs/client.md`). */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The fence's info string, trimmed (`ts continued`). */
  info: string;
  /** Its first word (`ts`), '' for a bare fence. */
  lang: string;
  /** The words after it (`continued`, `serves`). */
  flags: string[];
  /** The lines between the fences, de-indented by the fence's indent. */
  body: string;
}

/** The docs the harness reads: README.md, docs/*.md, examples/*\/README.md; `DOCS_BLOCKS=a.md,b.md` narrows them. */
export function docFiles(only = process.env.DOCS_BLOCKS): string[] {
  const all = ['README.md',
    ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`),
    ...readdirSync(join(ROOT, 'examples')).sort().map((d) => `examples/${d}/README.md`).filter((f) => existsSync(join(ROOT, f)))];
  if (only === undefined || only.trim() === '') return all;
  const wanted = only.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const w of wanted) if (!all.includes(w)) throw new Error(`DOCS_BLOCKS names ${w}, which is not one of the docs: ${all.join(', ')}`);
  return all.filter((f) => wanted.includes(f));
}

/** Every fenced block of a markdown text (``` or ~~~ fences, indented ones in lists too). */
export function parseBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(`{3,}|~{3,})(.*)$/.exec(lines[i] as string);
    if (open === null) continue;
    const [, indent = '', fence = '', rest = ''] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j] as string;
      if (new RegExp(`^ *${fence[0] === '`' ? '`' : '~'}{${fence.length},} *$`).test(l)) break;
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    if (j === lines.length) throw new Error(`${file}:${i + 1}: a fence that is never closed`);
    const info = rest.trim();
    const [lang = '', ...flags] = info.split(/\s+/).filter((w) => w !== '');
    blocks.push({ file, line: i + 1, info, lang: lang.toLowerCase(), flags, body: body.join('\n') });
    i = j;
  }
  return blocks;
}

/** Problems with info strings: a bare fence, an unknown language or flag. */
export function infoProblems(blocks: DocBlock[]): string[] {
  const problems: string[] = [];
  for (const b of blocks) {
    const where = `${b.file}:${b.line}`;
    if (b.lang === '') problems.push(`${where}: a fence without an info string (say what it is: ts, sh, json, text, http...)`);
    else if (!CODE.has(b.lang) && !SHOWN.has(b.lang) && b.lang !== 'json' && b.lang !== 'sh') problems.push(`${where}: unknown info string "${b.lang}"`);
    for (const f of b.flags) if (!FLAGS.has(f)) problems.push(`${where}: unknown flag "${f}" in "${b.info}"`);
    if (b.flags.length > 0 && !CODE.has(b.lang)) problems.push(`${where}: flags are for ts/js blocks only ("${b.info}")`);
  }
  return problems;
}

/** A program made of one block, or of a block and the ones that continue it. */
export interface DocProgram {
  /** `docs/client.md:12` (and `+40` for each continuation). */
  name: string;
  file: string;
  /** The blocks, in order. */
  blocks: DocBlock[];
  /** The file the program is saved as, relative to the page's folder (a `// tasks.ts` first line names it). */
  path: string;
  /** False for a block that only defines a file the next ones import (`// tasks.ts` without a top-level call). */
  run: boolean;
  /** `serves`: runs until stopped; passes when it printed a line and is still alive, or exited 0. */
  serves: boolean;
  /** `fails`: must exit non-zero (shows an error). */
  fails: boolean;
  /** Where line n (1-based) of the program comes from. */
  lineMap: { file: string; line: number }[];
  source: string;
}

/** Groups the ts/js blocks of one page into programs; `continued` blocks join the one above. */
export function programsOf(blocks: DocBlock[]): DocProgram[] {
  const programs: DocProgram[] = [];
  for (const b of blocks) {
    if (!CODE.has(b.lang)) continue;
    const js = b.lang === 'js' || b.lang === 'javascript';
    const bodyLines = b.body.split('\n');
    const map = bodyLines.map((_, k) => ({ file: b.file, line: b.line + 1 + k }));
    if (b.flags.includes('continued')) {
      const last = programs.at(-1);
      if (last === undefined || last.file !== b.file) throw new Error(`${b.file}:${b.line}: "continued", but no ts/js block above it on this page`);
      last.blocks.push(b);
      last.name += `+${b.line}`;
      last.source += `\n${b.body}`;
      last.lineMap.push(...map);
      last.run = true;
      last.serves ||= b.flags.includes('serves');
      continue;
    }
    const named = /^\/\/ ([\w./-]+\.(?:ts|js|mts|mjs|cts|cjs))\s*(?:\(.*\))?$/.exec(bodyLines[0] ?? '');
    const index = programs.filter((p) => p.file === b.file).length;
    const path = named?.[1] ?? `block-${String(b.line).padStart(4, '0')}-${index}.${js ? 'mjs' : 'mts'}`;
    programs.push({
      name: `${b.file}:${b.line}`, file: b.file, blocks: [b], path,
      // A named file is a module the next blocks import unless it is the page's entry point (main, app, server...).
      run: named === null || /^(main|app|server|producer|worker|start)\.[mc]?[jt]s$/.test(path),
      serves: b.flags.includes('serves'), fails: b.flags.includes('fails'),
      lineMap: map, source: b.body,
    });
  }
  return programs;
}

/** The folder where a page's programs are written (`<tmp>/docs/client.md/`). */
export function pageDir(base: string, file: string): string {
  return join(base, file.replace(/[^\w.-]/g, '_'));
}

/** Package names the blocks import, mapped to the sources. */
const PATHS: Record<string, string> = {
  flowcast: 'src/index.ts',
  'flowcast/server': 'src/server/index.ts',
  'flowcast/client': 'src/client/index.ts',
  'flowcast/redis': 'src/redis/index.ts',
};

/** Writes every program and a strict tsconfig over them into `base`; returns the tsconfig's path. */
export function writePrograms(base: string, programs: DocProgram[]): string {
  for (const p of programs) {
    const dir = pageDir(base, p.file);
    mkdirSync(join(dir, dirname(p.path)), { recursive: true });
    // `export {}` would shift no line: modules are modules by their import lines, and a block without one gets it appended.
    const isModule = /^\s*(import|export)\s/m.test(p.source) || /\.c[jt]s$/.test(p.path);
    writeFileSync(join(dir, p.path), isModule ? `${p.source}\n` : `${p.source}\nexport {};\n`);
  }
  const tsconfig = join(base, 'tsconfig.json');
  const paths = Object.fromEntries(Object.entries(PATHS).map(([k, v]) => [k, [join(ROOT, v)]]));
  writeFileSync(tsconfig, JSON.stringify({
    compilerOptions: {
      target: 'ES2023', lib: ['ES2023', 'DOM', 'DOM.Iterable', 'ESNext.Disposable'], module: 'NodeNext', moduleResolution: 'NodeNext',
      strict: true, noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true, noEmit: true, skipLibCheck: true,
      allowJs: true, checkJs: true, allowImportingTsExtensions: true, esModuleInterop: true, resolveJsonModule: true, isolatedModules: true,
      types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')], baseUrl: ROOT, paths,
    },
    include: [`${base}/**/*.mts`, `${base}/**/*.mjs`, `${base}/**/*.ts`, `${base}/**/*.js`, `${base}/**/*.cts`, `${base}/**/*.cjs`],
  }, null, 2));
  return tsconfig;
}

/** Result of a child process. */
export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** For `serves` programs: still running 1.5 s after it printed, it was stopped by the harness (SIGINT). */
  stopped: boolean;
}

/** Runs a command; with `untilOutput`, sends SIGINT once it printed a line to stdout and lets it exit. */
export function runChild(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number; untilOutput?: boolean; input?: string }): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let stopped = false;
    let printed = false;
    const killGroup = (signal: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGKILL');
    }, options.timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (options.untilOutput === true && !printed && stdout.includes('\n')) {
        printed = true;
        // Give it a moment to fail on what it printed, then stop it as a user's Ctrl-C would.
        setTimeout(() => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          stopped = true;
          killGroup('SIGINT');
        }, 1500).unref();
        setTimeout(() => killGroup('SIGKILL'), 15_000).unref();
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // A program that exits before reading its stdin closes the pipe: that is no failure of the test.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, stopped });
    });
  });
}

/** `tsc` over the generated tsconfig; each error rewritten to the doc's file:line. */
export async function typecheck(base: string, tsconfig: string, programs: DocProgram[]): Promise<string[]> {
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const result = await runChild(process.execPath, [tsc, '-p', tsconfig, '--pretty', 'false'], { cwd: ROOT, env: process.env, timeoutMs: 240_000 });
  const out = `${result.stdout}${result.stderr}`.trim();
  if (result.code === 0) return [];
  const byPath = new Map(programs.map((p) => [join(pageDir(base, p.file), p.path), p]));
  const errors: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^(.+?)\((\d+),(\d+)\): (error .*)$/.exec(line);
    if (m === null) {
      if (line.trim() !== '' && errors.length > 0) errors[errors.length - 1] += `\n${line}`;
      else if (line.trim() !== '') errors.push(line);
      continue;
    }
    const [, path = '', row = '0', , message = ''] = m;
    const program = byPath.get(join(base, relative(base, path.startsWith('/') ? path : join(ROOT, path))));
    const origin = program?.lineMap[Number(row) - 1];
    errors.push(origin === undefined ? line : `${origin.file}:${origin.line}: ${message}`);
  }
  return errors;
}

/** Maps `<tmp>/…/block-0012-0.mts:7` in a stack trace or message back to the doc's file:line. */
export function mapStack(text: string, base: string, programs: DocProgram[]): string {
  let out = text;
  for (const p of programs) {
    const path = join(pageDir(base, p.file), p.path);
    out = out.split(path).join(`«${p.name}»`);
    out = out.replace(new RegExp(`(?:file://)?«${p.name.replace(/[.+]/g, '\\$&')}»:(\\d+)(?::\\d+)?`, 'g'), (_all, row: string) => {
      const origin = p.lineMap[Number(row) - 1];
      return origin === undefined ? `${p.name} (line ${row})` : `${origin.file}:${origin.line}`;
    });
  }
  return out;
}

/** Runs `items` through `fn`, at most `limit` at once. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
