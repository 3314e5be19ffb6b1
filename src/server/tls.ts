/**
 * The server's native TLS material (seed 000 §10.4 passes `ssl_cert` and `ssl_key` as
 * file paths): each of `cert` and `key` is a path, PEM text or a Buffer. Files are read
 * once, at construction; a file that cannot be read or holds no PEM is named in the error
 * instead of OpenSSL's bare "no start line".
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { describeError, InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, show } from '../core/validate.js';

/** Native TLS options of the server. */
export interface TlsOptions {
  /** The certificate (chain): a file path, or PEM text or a Buffer of it. */
  cert: string | Buffer;
  /** The private key of `cert`: a file path, or PEM text or a Buffer of it. */
  key: string | Buffer;
}

const PEM_START = '-----BEGIN';

/** One of the two, loaded, with where it came from for error messages. */
function load(value: unknown, name: 'cert' | 'key'): { pem: string | Buffer; from: string } {
  const what = name === 'cert' ? 'certificate' : 'private key';
  if (Buffer.isBuffer(value)) return { pem: value, from: 'a Buffer' };
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidArgumentError(`tls.${name} must be a file path, PEM text or a Buffer, received ${show(value)}`);
  }
  if (value.includes(PEM_START)) return { pem: value, from: 'PEM text' };
  let text: string;
  try {
    text = readFileSync(value, 'utf8');
  } catch (error) {
    throw new InvalidArgumentError(`tls.${name}: cannot read the file ${value}: ${describeError(error)}`);
  }
  if (!text.includes(PEM_START)) throw new InvalidArgumentError(`tls.${name}: the file ${value} holds no PEM ${what} (no "${PEM_START}" line)`);
  return { pem: text, from: `file ${value}` };
}

/**
 * Validates `tls` and reads its files: what Node's HTTPS server takes. Checks that the
 * certificate and key can be used together (OpenSSL's own message, with their origins).
 *
 * @throws InvalidArgumentError naming the option, the file and what is wrong.
 */
export function resolveTls(tls: unknown): { cert: string | Buffer; key: string | Buffer } {
  if (typeof tls !== 'object' || tls === null || Array.isArray(tls)) {
    throw new InvalidArgumentError(`tls must be an object { cert, key } (file paths, PEM text or Buffers), received ${show(tls)}`);
  }
  checkKnownKeys(checkObject(tls, 'tls'), ['cert', 'key'], 'tls');
  const { cert: certValue, key: keyValue } = tls as Record<string, unknown>;
  const cert = load(certValue, 'cert');
  const key = load(keyValue, 'key');
  try {
    createSecureContext({ cert: cert.pem, key: key.pem });
  } catch (error) {
    throw new InvalidArgumentError(`tls: the certificate (${cert.from}) and key (${key.from}) cannot be used: ${describeError(error)}`);
  }
  return { cert: cert.pem, key: key.pem };
}
