/** Hash routes (#/jobs, #/jobs/ID, …): the server serves one page, whatever the view. */
import { useEffect, useState } from "preact/hooks";

export interface Route {
  view: "jobs" | "job" | "datasets" | "dataset" | "launch" | "compare" | "study" | "operations";
  id?: string;
}

export function parseRoute(hash: string): Route {
  const [view, id] = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  switch (view) {
    case "jobs":
      return id ? { view: "job", id } : { view: "jobs" };
    case "datasets":
      return id ? { view: "dataset", id } : { view: "datasets" };
    case "compare":
      return id ? { view: "study", id } : { view: "compare" };
    case "launch":
    case "operations":
      return { view };
    default:
      return { view: "jobs" };
  }
}

export const href = {
  jobs: () => "#/jobs",
  job: (id: string) => `#/jobs/${encodeURIComponent(id)}`,
  datasets: () => "#/datasets",
  dataset: (id: string) => `#/datasets/${encodeURIComponent(id)}`,
  launch: () => "#/launch",
  compare: () => "#/compare",
  study: (id: string) => `#/compare/${encodeURIComponent(id)}`,
  operations: () => "#/operations",
};

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
