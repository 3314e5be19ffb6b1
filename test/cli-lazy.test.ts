/**
 * `flowcast` loads a subcommand's module only when that subcommand runs
 * (src/cli/command-table.ts). These tests hold the lazy table to what the real commands
 * say, so `flowcast --help` lists every command exactly as the loaded ones would.
 */
import { readFileSync } from 'node:fs';
import { Command, Help } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMANDS, REDIS_PACKAGES, SERVER_PACKAGES, type CommandEntry } from '../src/cli/command-table.js';
import { createBaseProgram, createProgram, loadCommand } from '../src/cli/program.js';
import { MissingPackagesError, missingPackageOf, missingPackages } from '../src/cli/peers.js';
import { flowcast } from './helpers/cli.js';

/** The program with every real subcommand loaded, as `flowcast` was before it went lazy. */
async function eagerProgram(): Promise<Command> {
  const program = createBaseProgram();
  for (const entry of COMMANDS) (await entry.load())(program);
  return program;
}

describe('lazy subcommands', () => {
  it('the table names, terms and descriptions are those of the real commands, in order', async () => {
    const eager = await eagerProgram();
    const help = new Help();
    expect(eager.commands.map((cmd) => ({ name: cmd.name(), term: help.subcommandTerm(cmd), description: cmd.description() }))).toEqual(
      COMMANDS.map(({ name, term, description }) => ({ name, term, description })),
    );
  });

  it('flowcast --help (nothing loaded) prints exactly what the fully loaded program prints', async () => {
    const lazy = await createProgram(['node', 'flowcast', '--help']);
    const eager = await eagerProgram();
    expect(lazy.helpInformation()).toBe(eager.helpInformation());
    for (const { name } of COMMANDS) expect(lazy.helpInformation()).toContain(`\n  ${name} `);
  });

  it.each(COMMANDS.map((entry) => [entry.name, entry] as const))('flowcast %s --help loads that command alone', async (name, entry: CommandEntry) => {
    for (const argv of [[name, '--help'], ['help', name]]) {
      const program = await createProgram(['node', 'flowcast', ...argv]);
      expect(program.commands.map((cmd) => cmd.name())).toEqual([name]);
      const help = program.commands[0]!.helpInformation();
      expect(help).toContain(`Usage: flowcast ${entry.term}`);
      expect(help).toContain(entry.description.slice(0, 20));
    }
  });

  it('the built-in help works from a real process: flowcast --help and flowcast status --help exit 0', async () => {
    const all = flowcast(['--help']);
    expect((await all.exited).code).toBe(0);
    for (const { term } of COMMANDS) expect(all.stdout()).toContain(term);
    const status = flowcast(['status', '--help']);
    expect((await status.exited).code).toBe(0);
    expect(status.stdout()).toContain('Usage: flowcast status [options] <id>');
  }, 60_000);
});

describe('optional packages', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    peerDependencies: Record<string, string>;
    peerDependenciesMeta: Record<string, { optional?: boolean }>;
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };

  it('the server and Redis packages are exactly the optional peers, each pinned in devDependencies', () => {
    expect([...SERVER_PACKAGES, ...REDIS_PACKAGES].sort()).toEqual(Object.keys(pkg.peerDependencies).sort());
    for (const name of Object.keys(pkg.peerDependencies)) {
      expect(pkg.peerDependenciesMeta[name]?.optional, name).toBe(true);
      expect(pkg.dependencies[name], name).toBeUndefined();
      expect(pkg.devDependencies[name], name).toMatch(/^\d+\.\d+\.\d+$/);
    }
    for (const entry of COMMANDS) for (const name of entry.needs) expect(Object.keys(pkg.peerDependencies)).toContain(name);
  });

  it('a missing package stops the command with one line naming it and the npm install that fixes it', async () => {
    expect(missingPackages(['commander', 'flowcast-no-such-package', 'ws'])).toEqual(['flowcast-no-such-package']);
    const entry: CommandEntry = {
      name: 'serve',
      term: 'serve [options]',
      description: 'x',
      needs: ['fastify', 'flowcast-no-such-package'],
      load: () => Promise.reject(new Error('must not load')),
    };
    const error = await loadCommand(entry).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingPackagesError);
    expect((error as MissingPackagesError).packages).toEqual(['flowcast-no-such-package']);
    expect((error as Error).message).toBe(
      'flowcast serve needs flowcast-no-such-package, not installed (optional peer dependencies of flowcast). Install: npm install flowcast-no-such-package',
    );
  });

  it('a module-not-found for an unlisted peer is reported the same way', async () => {
    const specifier: string = 'flowcast-no-such-package';
    const notFound: unknown = await import(specifier).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(missingPackageOf(notFound, ['flowcast-no-such-package'])).toBe('flowcast-no-such-package');
    expect(missingPackageOf(notFound, ['fastify'])).toBeUndefined();
    const entry: CommandEntry = { name: 'worker', term: 'worker [options]', description: 'x', needs: [], load: () => Promise.reject(Object.assign(new Error("Cannot find package 'bullmq' imported from /x.js"), { code: 'ERR_MODULE_NOT_FOUND' })) };
    const error = await loadCommand(entry).catch((e: unknown) => e);
    expect((error as Error).message).toBe(`flowcast worker needs bullmq, not installed (optional peer dependencies of flowcast). Install: npm install bullmq@${pkg.peerDependencies['bullmq']}`);
  });
});
