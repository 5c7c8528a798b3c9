import { useState, type FormEvent } from "react";
import { useLocation, useNavigate } from "react-router-dom";
import { auth } from "../lib/auth";
import { useAuth } from "../useAuth";
import { ProblemView } from "../components/ProblemView";

export function SignIn() {
  const { state } = useAuth();
  const nav = useNavigate();
  const loc = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  if (state.mode === "disabled")
    return (
      <div className="empty">
        <h1>Sign in</h1>
        <p>No sign-in is configured on this gateway yet, so there is nothing to sign in to.</p>
      </div>
    );

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await auth.login(email, password);
      // shown in place of the page asked for: that page appears; from /signin: the content list
      if (loc.pathname === "/signin") nav("/content");
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card narrow" onSubmit={submit} aria-labelledby="signin-h">
      <h1 id="signin-h">Sign in</h1>
      {state.mode === "signed-out" && state.error && <p className="problem">{state.error}</p>}
      <label htmlFor="email">Email</label>
      <input id="email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
      <label htmlFor="password">Password</label>
      <input
        id="password"
        type="password"
        autoComplete="current-password"
        required
        value={password}
        onChange={(e) => setPassword(e.target.value)}
      />
      <ProblemView error={error} action="Sign-in" />
      <button type="submit" disabled={busy}>
        {busy ? "Signing in…" : "Sign in"}
      </button>
    </form>
  );
}
