import { useEffect, useRef } from "react";
import { NavLink, Navigate, Route, Routes, useLocation } from "react-router-dom";
import { useAuth } from "./useAuth";
import { auth } from "./lib/auth";
import { ContentList } from "./pages/ContentList";
import { ContentNew } from "./pages/ContentNew";
import { ContentDetail } from "./pages/ContentDetail";
import { SystemPage } from "./pages/System";
import { SignIn } from "./pages/SignIn";
import { SourcesPage } from "./pages/Sources";
import { SourceDetail } from "./pages/SourceDetail";
import { ImportPage, ListsPage, SegmentsPage, SubscriberDetail, SubscribersPage } from "./pages/Subscribers";

export function App() {
  const { state } = useAuth();
  const needsSignIn = state.mode === "signed-out";
  // a new page: focus goes to its main region (as after a page load), so a keyboard or screen
  // reader user continues in the new page, not on a link that may be gone
  const { pathname } = useLocation();
  const shown = useRef(pathname);
  useEffect(() => {
    if (shown.current === pathname) return;
    shown.current = pathname;
    document.getElementById("main")?.focus();
  }, [pathname]);
  return (
    <div className="app">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Content engine</span>
        <nav aria-label="Main">
          <NavLink to="/content">Content</NavLink>
          <NavLink to="/sources">Sources</NavLink>
          <NavLink to="/subscribers">Subscribers</NavLink>
          <NavLink to="/system">System</NavLink>
        </nav>
        <div className="who">
          {state.mode === "signed-in" && (
            <>
              <span className="small">
                {state.user.email} · <span data-testid="role">{state.user.role}</span>
              </span>
              <button className="link" onClick={() => void auth.logout()}>
                Sign out
              </button>
            </>
          )}
        </div>
      </header>
      {state.mode === "disabled" && (
        <div className="banner" role="status" data-testid="no-auth-banner">
          No sign-in configured: the auth API does not answer ({state.reason}). Everyone who reaches
          the gateway can use this dashboard; the API decides what is allowed.
        </div>
      )}
      <main id="main" tabIndex={-1}>
        {state.mode === "checking" ? (
          <p className="muted">Loading…</p>
        ) : needsSignIn ? (
          <SignIn />
        ) : (
          <Routes>
            <Route path="/" element={<Navigate to="/content" replace />} />
            <Route path="/content" element={<ContentList />} />
            <Route path="/content/new" element={<ContentNew />} />
            <Route path="/content/:id" element={<ContentDetail />} />
            <Route path="/sources" element={<SourcesPage />} />
            <Route path="/sources/:id" element={<SourceDetail />} />
            <Route path="/subscribers" element={<SubscribersPage />} />
            <Route path="/subscribers/lists" element={<ListsPage />} />
            <Route path="/subscribers/segments" element={<SegmentsPage />} />
            <Route path="/subscribers/import" element={<ImportPage />} />
            <Route path="/subscribers/:id" element={<SubscriberDetail />} />
            <Route path="/system" element={<SystemPage />} />
            <Route path="/signin" element={<SignIn />} />
            <Route
              path="*"
              element={
                <div className="empty">
                  <h1>Page not found</h1>
                  <p>
                    Nothing lives at this address. Go to <NavLink to="/content">Content</NavLink>.
                  </p>
                </div>
              }
            />
          </Routes>
        )}
      </main>
    </div>
  );
}
