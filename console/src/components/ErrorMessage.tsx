import type { ApiError } from "../api.ts";
import { session } from "../session.ts";

/** An error as a person reads it; a refused key offers signing in again. */
export function ErrorMessage({ error, retry }: { error: ApiError | undefined; retry?: () => void }) {
  if (!error) return null;
  const signInAgain = () => {
    session.signOut();
    window.location.reload();
  };
  return (
    <div class="error" role="alert">
      <strong>{error.kind === "auth" ? "Not signed in: " : "Error: "}</strong>
      {error.message}
      {error.code && error.kind === "api" ? <span class="code"> ({error.code})</span> : null}
      {error.kind === "auth" ? (
        <button type="button" onClick={signInAgain}>
          Sign in again
        </button>
      ) : retry ? (
        <button type="button" onClick={retry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}
