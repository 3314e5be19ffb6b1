import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

/** `Date.now()`, refreshed every `ms` (clocks of running runs; no server call). */
export function useNow(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/**
 * A counter and a `bump()` that raises it at most once per frame (16 ms): a burst of
 * events re-renders once. A timer rather than requestAnimationFrame, which a hidden tab
 * pauses: the data must stay current there too.
 */
export function useFrameCounter(): [number, () => void] {
  const [n, setN] = useState(0);
  const pending = useRef(false);
  const bump = useCallback(() => {
    if (pending.current) return;
    pending.current = true;
    setTimeout(() => {
      pending.current = false;
      setN((x) => x + 1);
    }, 16);
  }, []);
  return [n, bump];
}
