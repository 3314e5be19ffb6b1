/** A small History API router: real links (`<a href>`), so keyboard and middle-click work. */
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { basePath } from './base.js';

export type Route =
  | { page: 'overview' }
  | { page: 'run'; runId: string }
  | { page: 'pipelines' }
  | { page: 'pipeline'; pipelineId: string }
  | { page: 'engine' }
  | { page: 'metrics' }
  | { page: 'notfound'; path: string };

export const paths = {
  overview: `${basePath}/dashboard/runs`,
  run: (runId: string): string => `${basePath}/dashboard/runs/${encodeURIComponent(runId)}`,
  pipelines: `${basePath}/dashboard/pipelines`,
  pipeline: (pipelineId: string): string => `${basePath}/dashboard/pipelines/${encodeURIComponent(pipelineId)}`,
  engine: `${basePath}/dashboard/engine`,
  metrics: `${basePath}/dashboard/metrics`,
};

/** The page a location shows; `base` is the server's base path (see base.ts). */
export function parseRoute(pathname: string, base = basePath): Route {
  const inside = base !== '' && (pathname === base || pathname.startsWith(`${base}/`)) ? pathname.slice(base.length) : pathname;
  const path = inside.replace(/\/+$/, '') || '/';
  if (path === '/' || path === '/dashboard' || path === '/dashboard/runs') return { page: 'overview' };
  if (path === '/dashboard/engine') return { page: 'engine' };
  if (path === '/dashboard/pipelines') return { page: 'pipelines' };
  const pipeline = /^\/dashboard\/pipelines\/([^/]+)$/.exec(path);
  if (pipeline?.[1] !== undefined) return { page: 'pipeline', pipelineId: decodeURIComponent(pipeline[1]) };
  if (path === '/dashboard/metrics') return { page: 'metrics' };
  const run = /^\/dashboard\/runs\/([^/]+)$/.exec(path);
  if (run?.[1] !== undefined) return { page: 'run', runId: decodeURIComponent(run[1]) };
  return { page: 'notfound', path };
}

const NAVIGATE = 'flowcast:navigate';

export function navigate(href: string): void {
  history.pushState(null, '', href);
  window.dispatchEvent(new Event(NAVIGATE));
  window.scrollTo(0, 0);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.pathname));
  useEffect(() => {
    const update = (): void => setRoute(parseRoute(location.pathname));
    window.addEventListener('popstate', update);
    window.addEventListener(NAVIGATE, update);
    return () => {
      window.removeEventListener('popstate', update);
      window.removeEventListener(NAVIGATE, update);
    };
  }, []);
  return route;
}

interface LinkProps {
  href: string;
  children: ComponentChildren;
  class?: string;
  title?: string;
  'aria-current'?: 'page' | undefined;
}

/** An `<a>` that navigates in the page on a plain click and stays a normal link otherwise. */
export function Link({ href, children, class: className, title, 'aria-current': current }: LinkProps): JSX.Element {
  const onClick = (e: MouseEvent): void => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={onClick} class={className} title={title} aria-current={current}>
      {children}
    </a>
  );
}
