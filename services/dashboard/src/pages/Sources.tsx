import { useEffect, useReducer, useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  createSource,
  deleteSource,
  emptySourceForm,
  formatInterval,
  formField,
  isTerminal,
  listSources,
  runReducer,
  SOURCE_KINDS,
  sourceAction,
  validateSourceForm,
  type LiveRun,
  type ScrapeSource,
  type SourceForm,
  type SourceKind,
} from "../lib/scraper";
import { openStream } from "../lib/stream";
import { ApiError, isUnavailable, type FieldError } from "../lib/problem";
import { useAuth } from "../useAuth";
import { Empty, formatTime, StatusBadge, Table } from "../components/bits";
import { Field } from "../components/Field";
import { ProblemView } from "../components/ProblemView";
import { ServiceUnavailable } from "./ServicePending";

export function RunCounts({ run }: { run: Pick<LiveRun, "fetched" | "new" | "unchanged" | "failed"> }) {
  return (
    <span className="counts small">
      <span>fetched {run.fetched}</span> · <span>new {run.new}</span> · <span>unchanged {run.unchanged}</span> ·{" "}
      <span className={run.failed ? "bad-text" : ""}>failed {run.failed}</span>
    </span>
  );
}

export function RunState({ run }: { run: LiveRun | undefined }) {
  if (!run) return <span className="muted small">no run since this page opened</span>;
  return (
    <span className="run-state" data-testid="run-state" data-live-events={run.events}>
      <span className={`badge badge-run-${run.state}`}>run {run.state}</span> <RunCounts run={run} />
      {run.error_summary && <span className="bad-text small"> {run.error_summary}</span>}
    </span>
  );
}

// Live state of every source's latest run, from source:* (or source:<id>).
export function useLiveRuns(channel: string, onEvent?: () => void) {
  const [runs, dispatch] = useReducer(runReducer, {});
  const [connected, setConnected] = useState(false);
  useEffect(() => {
    return openStream([channel], (e) => {
      if (e.type === "open") setConnected(true);
      if (e.type === "error") setConnected(false);
      if (e.type === "scrape.run") dispatch(e.data);
      if (e.type === "open" || e.type === "reset" || e.type === "scrape.run") onEvent?.();
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [channel]);
  return { runs, connected };
}

function RegisterForm({ onDone }: { onDone: (s: ScrapeSource) => void }) {
  const [f, setF] = useState<SourceForm>(emptySourceForm);
  const [errors, setErrors] = useState<FieldError[]>([]);
  const create = useMutation({
    mutationFn: createSource,
    onSuccess: (s) => {
      setF(emptySourceForm);
      setErrors([]);
      onDone(s);
    },
    onError: (e) => {
      if (e instanceof ApiError && e.problem.errors) setErrors(e.problem.errors.map((x) => ({ field: formField(x.field), detail: x.detail })));
    },
  });
  const set = <K extends keyof SourceForm>(k: K, v: SourceForm[K]) => setF({ ...f, [k]: v });
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    const { body, errors: errs } = validateSourceForm(f);
    setErrors(errs);
    if (!errs.length) create.mutate(body);
  };
  const known = new Set(["url", "kind", "name", "interval", "include", "exclude", "max_items", "paused"]);
  const other = errors.filter((e) => !known.has(e.field));
  return (
    <form className="card register" onSubmit={submit} noValidate aria-labelledby="reg-h">
      <h2 id="reg-h">Register a source</h2>
      <div className="grid2">
        <Field id="s-url" label="URL" field="url" errors={errors}>
          {(a) => <input {...a} type="url" value={f.url} onChange={(e) => set("url", e.target.value)} placeholder="https://example.com/feed.xml" />}
        </Field>
        <Field id="s-kind" label="Kind" field="kind" errors={errors}>
          {(a) => (
            <select {...a} value={f.kind} onChange={(e) => set("kind", e.target.value as SourceKind)}>
              {SOURCE_KINDS.map((k) => (
                <option key={k}>{k}</option>
              ))}
            </select>
          )}
        </Field>
        <Field id="s-name" label="Name (optional)" field="name" errors={errors}>
          {(a) => <input {...a} value={f.name} onChange={(e) => set("name", e.target.value)} />}
        </Field>
        <Field id="s-interval" label="Every" field="interval" errors={errors} hint="30m, 1h, 1d">
          {(a) => <input {...a} value={f.interval} onChange={(e) => set("interval", e.target.value)} />}
        </Field>
        <Field id="s-include" label="Include URLs matching" field="include" errors={errors} hint="one regular expression a line">
          {(a) => <textarea {...a} rows={2} value={f.include} onChange={(e) => set("include", e.target.value)} />}
        </Field>
        <Field id="s-exclude" label="Exclude URLs matching" field="exclude" errors={errors} hint="one regular expression a line">
          {(a) => <textarea {...a} rows={2} value={f.exclude} onChange={(e) => set("exclude", e.target.value)} />}
        </Field>
        <Field id="s-max" label="Max items a run" field="max_items" errors={errors}>
          {(a) => <input {...a} inputMode="numeric" value={f.max_items} onChange={(e) => set("max_items", e.target.value)} />}
        </Field>
        <div className="field">
          <label className="check">
            <input type="checkbox" checked={f.paused} onChange={(e) => set("paused", e.target.checked)} /> Start paused (runs only with
            “Run now”)
          </label>
        </div>
      </div>
      {other.map((e) => (
        <p key={e.field + e.detail} className="field-error">
          {e.field}: {e.detail}
        </p>
      ))}
      <ProblemView error={create.error} action="Registering" />
      <div className="actions">
        <button type="submit" disabled={create.isPending}>
          {create.isPending ? "Registering…" : "Register"}
        </button>
      </div>
    </form>
  );
}

export function SourceActions({ s, running, onChanged }: { s: ScrapeSource; running: boolean; onChanged: (deleted?: boolean) => void }) {
  const act = useMutation({
    mutationFn: (a: "pause" | "resume" | "run" | "delete") => (a === "delete" ? deleteSource(s.id) : sourceAction(s.id, a)),
    onSuccess: (_r, a) => onChanged(a === "delete"),
  });
  const label = s.name || s.url;
  const busy = (a: "pause" | "resume" | "run" | "delete", idle: string, doing: string) => (act.isPending && act.variables === a ? doing : idle);
  // the accessible name starts with the visible text (what a speech user says), then the source
  const runText = running ? "Running…" : busy("run", "Run now", "Starting…");
  const pauseText = s.status === "paused" ? busy("resume", "Resume", "Resuming…") : busy("pause", "Pause", "Pausing…");
  const deleteText = busy("delete", "Delete", "Deleting…");
  return (
    <div className="row-actions">
      <button className="secondary small-btn" onClick={() => act.mutate("run")} disabled={act.isPending || running} aria-label={`${runText} ${label}`}>
        {runText}
      </button>
      <button
        className="secondary small-btn"
        onClick={() => act.mutate(s.status === "paused" ? "resume" : "pause")}
        disabled={act.isPending}
        aria-label={`${pauseText} ${label}`}
      >
        {pauseText}
      </button>
      <button
        className="danger small-btn"
        disabled={act.isPending}
        aria-label={`${deleteText} ${label}`}
        onClick={() => {
          if (window.confirm(`Delete ${label}, with its runs and items?`)) act.mutate("delete");
        }}
      >
        {deleteText}
      </button>
      <ProblemView error={act.error} action="That" />
    </div>
  );
}

export function SourcesPage() {
  const qc = useQueryClient();
  const { canEdit } = useAuth();
  const q = useQuery({ queryKey: ["sources"], queryFn: ({ signal }) => listSources(signal), retry: false });
  const { runs, connected } = useLiveRuns("source:*", () => void qc.invalidateQueries({ queryKey: ["sources"] }));
  const [adding, setAdding] = useState(false);
  const sources = q.data?.sources ?? [];
  if (q.isError && isUnavailable(q.error) && !q.data)
    return (
      <section>
        <h1>Sources</h1>
        <ServiceUnavailable service="scraper" path="/api/scraper/sources" error={q.error} what="Register page, feed and sitemap sources, watch their runs and browse scraped items" />
      </section>
    );
  return (
    <section>
      <div className="title-row">
        <h1>Sources</h1>
        <span className={`live live-${connected ? "open" : "connecting"}`} data-testid="live">
          {connected ? "live" : "connecting…"}
        </span>
        {canEdit && (
          <button className={adding ? "secondary" : ""} onClick={() => setAdding(!adding)} aria-expanded={adding}>
            {adding ? "Close the form" : "Register a source"}
          </button>
        )}
      </div>
      {adding && canEdit && (
        <RegisterForm
          onDone={() => {
            setAdding(false);
            void qc.invalidateQueries({ queryKey: ["sources"] });
          }}
        />
      )}
      {q.isPending ? (
        <p className="muted">Loading sources…</p>
      ) : q.isError ? (
        <ProblemView error={q.error} action="Loading sources" />
      ) : sources.length === 0 ? (
        <Empty title="No sources yet">
          <p>{canEdit ? "Register a page, an RSS/Atom feed or a sitemap: the scraper fetches it on its schedule, or at once with “Run now”." : "Editors register sources here."}</p>
        </Empty>
      ) : (
        <Table label="Sources" cols={["Source", "Kind", { label: "Every", className: "hide-narrow" }, "Status", "Latest run (live)", ...(canEdit ? ["Actions"] : [])]}>
          {sources.map((s) => {
            const run = runs[s.id];
            return (
              <tr key={s.id} data-source-id={s.id}>
                <td className="wrap">
                  <Link to={`/sources/${s.id}`}>{s.name || s.url}</Link>
                  {s.name && <div className="muted small">{s.url}</div>}
                </td>
                <td>{s.kind}</td>
                <td className="hide-narrow">{formatInterval(s.interval_seconds)}</td>
                <td>
                  <StatusBadge status={s.status} />
                </td>
                <td>
                  {run ? (
                    <RunState run={run} />
                  ) : s.status === "active" && s.next_run_at ? (
                    <span className="muted small">next run {formatTime(s.next_run_at)}</span>
                  ) : (
                    <RunState run={undefined} />
                  )}
                </td>
                {canEdit && (
                  <td>
                    <SourceActions
                      s={s}
                      running={!!run && !isTerminal(run.state)}
                      onChanged={() => void qc.invalidateQueries({ queryKey: ["sources"] })}
                    />
                  </td>
                )}
              </tr>
            );
          })}
        </Table>
      )}
    </section>
  );
}
