/**
 * The token the dashboard uses, kept in sessionStorage (per tab, gone when the tab
 * closes), and who it belongs to. A `?token=` in the page's URL is taken once and
 * removed from the address bar.
 */
import { useEffect, useState } from 'preact/hooks';

const KEY = 'flowcast.token';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token === null || token === '') sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, token);
  } catch {
    // Storage disabled: the token lasts as long as the page.
  }
}

/** Moves `?token=` from the URL into sessionStorage. */
export function adoptTokenFromUrl(): void {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  setToken(token);
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + url.search + url.hash);
}

type Listener = () => void;
let authNeeded = false;
const listeners = new Set<Listener>();

/** Something answered 401 or closed with 4001: the page asks for a token. */
export function requireToken(): void {
  if (authNeeded) return;
  authNeeded = true;
  for (const l of listeners) l();
}

/** `true` once the page must ask for a token. */
export function useAuthNeeded(): boolean {
  const [needed, setNeeded] = useState(authNeeded);
  useEffect(() => {
    const l = (): void => setNeeded(authNeeded);
    listeners.add(l);
    l();
    return () => void listeners.delete(l);
  }, []);
  return needed;
}
