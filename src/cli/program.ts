/**
 * Builds the `flowcast` program for one command line, loading only the subcommand that
 * line names (see command-table.ts). With no subcommand (`flowcast --help`, a typo) every
 * subcommand is listed from the table, unloaded.
 */
import { readFileSync } from 'node:fs';
import { Command, type Help } from 'commander';
import { COMMANDS, findCommand, type CommandEntry } from './command-table.js';
import { MissingPackagesError, missingPackageOf, missingPackages } from './peers.js';

const EXIT_HELP = `
Exit codes (every command):
  0  done (watch and serve: stopped by Ctrl-C or SIGTERM)
  1  failure: the server cannot be reached or refuses the token, no run fits the id, a package the command needs is not installed, ...
  2  usage: unknown command or option, bad option value, missing argument
  130 worker only: stopped by a second Ctrl-C, without waiting for running jobs

Examples:
  flowcast demo
  flowcast serve --demo
  flowcast history
  flowcast status 3f2a9c1d`;

interface PackageJson {
  version: string;
  peerDependencies?: Record<string, string>;
}

/** flowcast's package.json: same relative path from src/cli/ (tsx) and dist/cli/ (built). */
function readPackageJson(): PackageJson {
  return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as PackageJson;
}

/** The program with its own options and help text, and no subcommand yet. */
export function createBaseProgram(): Command {
  return new Command('flowcast')
    .description('Task pipelines for Node.js with truthful lifecycle events')
    .version(readPackageJson().version)
    .showHelpAfterError('(run "flowcast --help" for usage)')
    .exitOverride()
    .addHelpText('after', EXIT_HELP);
}

/**
 * The subcommand a command line names (`flowcast <name> ...` or `flowcast help <name>`):
 * the first argument that is a command's name, so program options before it (and their
 * values) do not hide it.
 */
function namedCommand(args: readonly string[]): CommandEntry | undefined {
  const at = args.findIndex((arg) => arg === 'help' || findCommand(arg) !== undefined);
  if (at === -1) return undefined;
  return args[at] === 'help' ? findCommand(args[at + 1]) : findCommand(args[at]);
}

/**
 * Imports one subcommand, after checking that the optional packages it needs are there.
 * @throws MissingPackagesError naming every missing package and the `npm install` for them
 */
export async function loadCommand(entry: CommandEntry): Promise<(program: Command) => Command> {
  const ranges = readPackageJson().peerDependencies ?? {};
  const missing = missingPackages(entry.needs);
  if (missing.length > 0) throw new MissingPackagesError(entry.name, missing, ranges);
  try {
    return await entry.load();
  } catch (error) {
    // A package the table does not list for this command: still one clear line.
    const name = missingPackageOf(error, Object.keys(ranges));
    if (name !== undefined) throw new MissingPackagesError(entry.name, [name], ranges);
    throw error;
  }
}

/**
 * The program for `argv` (`process.argv`: node, script, args...). Throws
 * `MissingPackagesError` when the named subcommand needs a package that is not installed.
 */
export async function createProgram(argv: readonly string[]): Promise<Command> {
  const program = createBaseProgram();
  const entry = namedCommand(argv.slice(2));
  if (entry !== undefined) {
    (await loadCommand(entry))(program);
    return program;
  }
  // Placeholders: listed by `flowcast --help` and suggested for typos, never run.
  for (const { name, description } of COMMANDS) program.command(name).description(description);
  program.configureHelp({
    subcommandTerm: (cmd: Command): string =>
      findCommand(cmd.name())?.term ?? (cmd.name() === 'help' ? 'help [command]' : cmd.name()),
  } satisfies Partial<Help>);
  return program;
}
