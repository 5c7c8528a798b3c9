import { useEffect, useSyncExternalStore } from "react";
import { auth, canEdit, type AuthState } from "./lib/auth";

let probed = false;

export function useAuth(): { state: AuthState; canEdit: boolean } {
  const state = useSyncExternalStore(auth.subscribe, auth.getState);
  useEffect(() => {
    if (!probed) {
      probed = true;
      void auth.probe();
    }
  }, []);
  return { state, canEdit: canEdit(state) };
}
