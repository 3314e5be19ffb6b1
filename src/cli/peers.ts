/**
 * Optional packages: the server and Redis packages are optional peer dependencies of
 * flowcast, so a client-only install does not pull them. A command that needs one that
 * is missing says so in one line, with the `npm install` that fixes it.
 */
import { ErrorCodes, FlowcastError } from '../core/errors.js';

/** Thrown when a command needs optional packages that are not installed. */
export class MissingPackagesError extends FlowcastError {
  override readonly name = 'MissingPackagesError';
  /** The packages that could not be found. */
  readonly packages: readonly string[];

  constructor(command: string, packages: readonly string[], ranges: Readonly<Record<string, string>>) {
    const specs = packages.map((name) => (ranges[name] === undefined ? name : `${name}@${ranges[name]}`));
    super(
      ErrorCodes.MISSING_PACKAGE,
      `flowcast ${command} needs ${packages.join(', ')}, not installed (optional peer dependencies of flowcast). Install: npm install ${specs.join(' ')}`,
    );
    this.packages = packages;
  }
}

/** Whether `name` can be imported from flowcast's own location (its node_modules, then its parents'). */
function isInstalled(name: string): boolean {
  try {
    import.meta.resolve(name);
    return true;
  } catch (error) {
    // Only "not found" means missing: a package that exists but refuses the bare import is there.
    return (error as { code?: unknown }).code !== 'ERR_MODULE_NOT_FOUND';
  }
}

/** The packages of `names` that are not installed, in the same order. */
export function missingPackages(names: readonly string[]): string[] {
  return names.filter((name) => !isInstalled(name));
}

/**
 * The bare package a module-not-found error names, when it is one of `known`
 * (Node: "Cannot find package 'fastify' imported from ..."); otherwise `undefined`.
 */
export function missingPackageOf(error: unknown, known: readonly string[]): string | undefined {
  if ((error as { code?: unknown } | null)?.code !== 'ERR_MODULE_NOT_FOUND') return undefined;
  const name = /Cannot find package '([^']+)'/.exec(String((error as Error).message))?.[1];
  return name !== undefined && known.includes(name) ? name : undefined;
}
