/** The console: sign in with an API key, then the views, all over the public GraphQL API. */
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { Api, ApiError } from "./api.ts";
import { ErrorMessage } from "./components/ErrorMessage.tsx";
import { ApiContext, useTitle } from "./hooks.ts";
import { href, type Route, useRoute } from "./router.ts";
import { session } from "./session.ts";
import "./styles.css";
import { Compare, Study } from "./views/Compare.tsx";
import { Dataset } from "./views/Dataset.tsx";
import { Datasets } from "./views/Datasets.tsx";
import { Job } from "./views/Job.tsx";
import { Jobs } from "./views/Jobs.tsx";
import { Launch } from "./views/Launch.tsx";
import { Operations } from "./views/Operations.tsx";

const VIEWER = "query Viewer { viewer { id name } }";

function SignIn({ onSignedIn }: { onSignedIn(key: string, tenant: string): void }) {
  useTitle("Sign in");
  const [key, setKey] = useState("");
  const [error, setError] = useState<ApiError | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    const api = new Api(key.trim());
    try {
      const { viewer } = await api.request<{ viewer: { name: string } }>(VIEWER);
      onSignedIn(key.trim(), viewer.name);
    } catch (err) {
      setError(
        err instanceof ApiError && err.kind === "auth"
          ? new ApiError(
              "api",
              "That API key was refused: check it, or ask an operator for a new one.",
              err.code,
            )
          : (err as ApiError),
      );
    } finally {
      api.close();
      setBusy(false);
    }
  };
  return (
    <main id="content" class="sign-in">
      <h1>trapdoor console</h1>
      <form class="card" onSubmit={submit}>
        <label>
          API key
          <input
            type="password"
            name="api-key"
            autoComplete="off"
            required
            value={key}
            onInput={(e) => setKey((e.target as HTMLInputElement).value)}
            placeholder="td_…"
          />
        </label>
        <p class="dim">
          The key stays in this browser tab (session storage) and is removed when you sign out.
        </p>
        <button type="submit" disabled={busy || !key.trim()}>
          Sign in
        </button>
        <ErrorMessage error={error} />
      </form>
    </main>
  );
}

function View({ route }: { route: Route }) {
  switch (route.view) {
    case "job":
      return <Job id={route.id as string} />;
    case "datasets":
      return <Datasets />;
    case "dataset":
      return <Dataset id={route.id as string} />;
    case "launch":
      return <Launch />;
    case "compare":
      return <Compare />;
    case "study":
      return <Study id={route.id as string} />;
    case "operations":
      return <Operations />;
    default:
      return <Jobs />;
  }
}

const NAV: [Route["view"][], string, string][] = [
  [["jobs", "job"], "Jobs", href.jobs()],
  [["datasets", "dataset"], "Datasets", href.datasets()],
  [["launch"], "Launch", href.launch()],
  [["compare", "study"], "Compare", href.compare()],
  [["operations"], "Operations", href.operations()],
];

function Console({ apiKey, onSignOut }: { apiKey: string; onSignOut(): void }) {
  const api = useMemo(() => new Api(apiKey), [apiKey]);
  const route = useRoute();
  const [tenant, setTenant] = useState<string | undefined>();
  useEffect(() => {
    api.request<{ viewer: { name: string } }>(VIEWER).then(
      (d) => setTenant(d.viewer.name),
      () => {},
    );
    return () => api.close();
  }, [api]);
  return (
    <ApiContext.Provider value={api}>
      <a class="skip" href="#content">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">trapdoor</span>
        <nav aria-label="Views">
          <ul>
            {NAV.map(([views, label, link]) => (
              <li key={label}>
                <a href={link} aria-current={views.includes(route.view) ? "page" : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="tenant">{tenant ?? ""}</span>
        <button type="button" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main id="content" tabIndex={-1}>
        <View key={`${route.view}/${route.id ?? ""}`} route={route} />
      </main>
    </ApiContext.Provider>
  );
}

function App() {
  const [key, setKey] = useState(session.key());
  if (!key) {
    return (
      <SignIn
        onSignedIn={(k) => {
          session.signIn(k);
          setKey(k);
        }}
      />
    );
  }
  return (
    <Console
      apiKey={key}
      onSignOut={() => {
        session.signOut();
        setKey(null);
        window.location.hash = "";
      }}
    />
  );
}

render(<App />, document.getElementById("app") as HTMLElement);
