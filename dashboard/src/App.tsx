/** The dashboard's shell: navigation, the offline banner, the token form, and the page of the route. */
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { getSession, type Session } from './api.js';
import { onConnectionState } from './live.js';
import { Overview } from './pages/Overview.js';
import { Pipelines } from './pages/Pipelines.js';
import { RunDetail } from './pages/RunDetail.js';
import { Link, paths, useRoute, type Route } from './router.js';
import { getToken, requireToken, setToken, useAuthNeeded } from './session.js';

/**
 * A page loaded on first use: the charts (Chart.js) are in the Engine and Metrics pages'
 * own chunk, so the runs overview — the page most people open — loads without them.
 */
function lazyPage(load: () => Promise<() => JSX.Element>): () => JSX.Element {
  let loaded: (() => JSX.Element) | null = null;
  return function LazyPage(): JSX.Element {
    const [Component, setComponent] = useState<(() => JSX.Element) | null>(() => loaded);
    useEffect(() => {
      if (Component !== null) return;
      void load().then((c) => {
        loaded = c;
        setComponent(() => c);
      });
    }, []);
    return Component === null ? <p class="muted">Loading…</p> : <Component />;
  };
}

const Engine = lazyPage(async () => (await import('./pages/Engine.js')).Engine);
const Metrics = lazyPage(async () => (await import('./pages/Metrics.js')).Metrics);

function Page({ route }: { route: Route }): JSX.Element {
  switch (route.page) {
    case 'overview':
      return <Overview />;
    case 'run':
      return <RunDetail key={route.runId} runId={route.runId} />;
    case 'pipelines':
      return <Pipelines />;
    case 'pipeline':
      return <Pipelines key={route.pipelineId} only={route.pipelineId} />;
    case 'engine':
      return <Engine />;
    case 'metrics':
      return <Metrics />;
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            No page at <code>{route.path}</code>. <Link href={paths.overview}>Back to the runs</Link>
          </p>
        </section>
      );
  }
}

function TokenForm({ rejected }: { rejected: boolean }): JSX.Element {
  const [value, setValue] = useState('');
  const submit = (e: Event): void => {
    e.preventDefault();
    if (value.trim() === '') return;
    setToken(value.trim());
    location.reload();
  };
  return (
    <main id="main" class="login">
      <form class="card" onSubmit={submit} aria-labelledby="login-title" data-testid="token-form">
        <h1 id="login-title">flowcast</h1>
        <p>This server needs a token (an API key or a JWT) to show its runs.</p>
        {rejected && (
          <p class="error" role="alert">
            The token was not accepted. Try another.
          </p>
        )}
        <label for="token">Token</label>
        <input id="token" name="token" type="password" autoComplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} autoFocus />
        <button type="submit">Sign in</button>
        <p class="muted small">Kept in this tab only (sessionStorage).</p>
      </form>
    </main>
  );
}

function OfflineBanner(): JSX.Element | null {
  const [offline, setOffline] = useState(false);
  useEffect(
    () =>
      onConnectionState((state, wasOpen) => {
        if (state === 'open') setOffline(false);
        else if (wasOpen && (state === 'reconnecting' || state === 'connecting')) setOffline(true);
      }),
    [],
  );
  if (!offline) return null;
  return (
    <div class="offline" role="status" data-testid="offline">
      <strong>Offline</strong> — the connection to the server is lost. Reconnecting; the page catches up on its own.
    </div>
  );
}

export function App(): JSX.Element {
  const route = useRoute();
  const authNeeded = useAuthNeeded();
  const [session, setSession] = useState<Session | null>(null);
  useEffect(() => {
    getSession().then(
      (s) => {
        setSession(s);
        if (s.auth_required && !s.authenticated) requireToken();
      },
      () => setSession({ auth_required: false, authenticated: true, principal: null }),
    );
  }, []);
  if (authNeeded) return <TokenForm rejected={getToken() !== null} />;
  if (session === null) return <main id="main" class="muted">Loading…</main>;
  const here = route.page;
  const signOut = (): void => {
    setToken(null);
    location.reload();
  };
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href={paths.overview} class="brand">
          flowcast
        </Link>
        <nav aria-label="Pages">
          <Link href={paths.overview} aria-current={here === 'overview' || here === 'run' ? 'page' : undefined}>
            Runs
          </Link>
          <Link href={paths.pipelines} aria-current={here === 'pipelines' || here === 'pipeline' ? 'page' : undefined}>
            Pipelines
          </Link>
          <Link href={paths.engine} aria-current={here === 'engine' ? 'page' : undefined}>
            Engine
          </Link>
          <Link href={paths.metrics} aria-current={here === 'metrics' ? 'page' : undefined}>
            Metrics
          </Link>
        </nav>
        <span class="grow" />
        {session.principal !== null && (
          <span class="who">
            {session.principal.id}{' '}
            <button type="button" class="link" onClick={signOut}>
              Sign out
            </button>
          </span>
        )}
      </header>
      <OfflineBanner />
      <main id="main">
        <Page route={route} />
      </main>
    </>
  );
}
