/**
 * The API key lives in this tab's session storage only: it survives a reload, not the tab, and
 * no other tab or later visit sees it. Signing out removes it.
 */
const KEY = "trapdoor.apiKey";

export const session = {
  key: (): string | null => sessionStorage.getItem(KEY),
  signIn: (key: string): void => sessionStorage.setItem(KEY, key),
  signOut: (): void => sessionStorage.removeItem(KEY),
};
