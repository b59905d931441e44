/** Data loading shared by the views: one query, its state, and a reload. */
import { createContext } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";
import { type Api, ApiError } from "./api.ts";

export const ApiContext = createContext<Api | null>(null);

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (!api) throw new Error("useApi outside a signed-in console");
  return api;
}

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload(): void;
  /** Replace the data in place (a live update). */
  set(update: (data: T | undefined) => T | undefined): void;
}

const asApiError = (error: unknown): ApiError =>
  error instanceof ApiError ? error : new ApiError("server", String((error as Error)?.message ?? error));

/** Runs `query` whenever its text or variables change; a newer answer always wins over an older one. */
export function useQuery<T>(query: string, variables: Record<string, unknown> = {}): Loaded<T> {
  const api = useApi();
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const generation = useRef(0);
  const vars = JSON.stringify(variables);
  const load = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    api.request<T>(query, JSON.parse(vars)).then(
      (data) => mine === generation.current && setState({ data, loading: false }),
      (error) =>
        mine === generation.current && setState((s) => ({ ...s, error: asApiError(error), loading: false })),
    );
  }, [api, query, vars]);
  useEffect(load, [load]);
  return {
    data: state.data,
    error: state.error,
    loading: state.loading,
    reload: load,
    set: (update) => setState((s) => ({ ...s, data: update(s.data) })),
  };
}

/** A mutation's state: run it, and read its error (with the field the API names). */
export function useMutation<T>(query: string) {
  const api = useApi();
  const [state, setState] = useState<{ error?: ApiError; busy: boolean }>({ busy: false });
  const run = async (variables: Record<string, unknown>): Promise<T | undefined> => {
    setState({ busy: true });
    try {
      const data = await api.request<T>(query, variables);
      setState({ busy: false });
      return data;
    } catch (error) {
      setState({ busy: false, error: asApiError(error) });
      return undefined;
    }
  };
  return { ...state, run, clear: () => setState({ busy: false }) };
}

/** Sets the document title for a view (screen readers announce it on navigation). */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · trapdoor`;
  }, [title]);
}
