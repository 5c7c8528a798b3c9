import { useEffect, useReducer, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { allowedActions, getItem, itemAction, saveBody, type Action, type Item } from "../lib/content";
import { getHistory, mergeHistory } from "../lib/history";
import { handoff, initialLive, liveReducer, subscribe } from "../lib/live";
import { useAuth } from "../useAuth";
import { formatTime, Progress, StatusBadge } from "../components/bits";
import { ProblemView } from "../components/ProblemView";

export function ContentDetail() {
  const { id = "" } = useParams();
  const qc = useQueryClient();
  const { canEdit } = useAuth();
  const key = ["item", id];
  const item = useQuery({
    queryKey: key,
    queryFn: ({ signal }) => getItem(id, signal),
    // a safety net under the live stream while a job runs
    refetchInterval: (q) => (q.state.data?.status === "generating" ? 10_000 : false),
  });
  // what the server committed; read again whenever the stream says something changed
  const history = useQuery({ queryKey: ["history", id], queryFn: ({ signal }) => getHistory(id, signal) });
  const [live, dispatch] = useReducer(liveReducer, initialLive);

  useEffect(() => {
    // what the New brief page saw of this item, until this page's own stream is open
    let stopHandoff: (() => void) | null = handoff.listen(id, dispatch);
    const close = subscribe([`content:${id}`], (e) => {
      if (e.type === "open" && stopHandoff) {
        stopHandoff();
        stopHandoff = null;
      }
      dispatch(e);
      // (re)connected, the item changed, or history was lost: read the item again
      if (e.type === "open" || e.type === "content.item" || e.type === "reset")
        void qc.invalidateQueries({ queryKey: ["item", id] });
      if (e.type !== "error") void qc.invalidateQueries({ queryKey: ["history", id] });
    });
    return () => {
      stopHandoff?.();
      close();
    };
  }, [id, qc]);

  const data = item.data;
  // the edit and the version it started from: If-Match carries that version, so an edit made
  // on a version someone else changed meanwhile is refused (412), never silently applied
  const [draft, setDraft] = useState<{ text: string; base: number } | null>(null);
  const setItem = (it: Item) => {
    qc.setQueryData(key, it);
    void qc.invalidateQueries({ queryKey: ["items"] });
    void qc.invalidateQueries({ queryKey: ["history", id] });
  };
  const save = useMutation({
    mutationFn: () => saveBody(id, draft?.text ?? "", draft?.base ?? data!.version),
    onSuccess: (it) => {
      setItem(it);
      setDraft(null);
    },
  });
  const act = useMutation({
    mutationFn: (a: Action) => itemAction(id, a, data!.version),
    onSuccess: (it) => {
      setItem(it);
      setDraft(null);
    },
  });

  if (item.isPending) return <p className="muted">Loading the item…</p>;
  if (item.isError)
    return (
      <section>
        <ProblemView error={item.error} action="Loading the item" />
        <Link to="/content">Back to content</Link>
      </section>
    );
  const it = item.data;
  const allowed = allowedActions(it.status);
  const generating = it.status === "generating";
  const stage = live.stage ?? it.stage;
  const percent = live.percent ?? (generating ? it.percent : null);
  const body = draft?.text ?? it.body;
  const dirty = draft !== null && draft.text !== it.body;
  const behind = dirty && draft.base !== it.version;
  const rows = mergeHistory(history.data, live.history, it.version);
  const pending = (a: Action, idle: string, busy: string) => (act.isPending && act.variables === a ? busy : idle);

  return (
    <section className="detail">
      <p className="small">
        <Link to="/content">← Content</Link>
      </p>
      <div className="title-row">
        <h1>{it.title}</h1>
        <StatusBadge status={it.status} />
        <span className={`live live-${live.connection}`} data-testid="live" data-last-event-id={live.lastEventId ?? ""}>
          {live.connection === "open" ? "live" : live.connection}
        </span>
      </div>
      <p className="muted">
        {it.kind}
        {it.topic ? ` · ${it.topic}` : ""} · version {it.version}
      </p>

      {generating && <Progress percent={percent} label={stage ? `Generating: ${stage}` : "Generating"} />}
      {it.status === "failed" && (
        <div className="problem" role="alert">
          <strong>Generation failed</strong>
          <p>{it.failure_reason || "no reason given"}</p>
        </div>
      )}

      <div className="cols">
        <div className="main-col">
          <label htmlFor="draft">Draft</label>
          <textarea
            id="draft"
            className="editor"
            rows={18}
            value={body}
            readOnly={!canEdit || !allowed.edit}
            onChange={(e) => setDraft({ text: e.target.value, base: draft?.base ?? it.version })}
            placeholder={
              generating
                ? "The draft appears here when generation is done."
                : canEdit && allowed.edit
                  ? "No body yet: write it here, or Regenerate to have the engine write it."
                  : "No body yet."
            }
          />
          {behind && (
            <p className="problem" role="status">
              The item changed (now version {it.version}) since you started editing version {draft.base}: saving will be
              refused.{" "}
              <button className="link" onClick={() => setDraft(null)}>
                Discard my edit and show the latest
              </button>
            </p>
          )}
          <ProblemView error={save.error} action="Saving" />
          <ProblemView error={act.error} action="The action" />
          {canEdit && (
            <div className="actions" data-testid="edit-controls">
              {allowed.edit && (
                <button onClick={() => save.mutate()} disabled={!dirty || save.isPending}>
                  {save.isPending ? "Saving…" : "Save draft"}
                </button>
              )}
              {allowed.approve && (
                <button onClick={() => act.mutate("approve")} disabled={dirty || act.isPending} title={dirty ? "Save the draft first" : undefined}>
                  {pending("approve", "Approve", "Approving…")}
                </button>
              )}
              {allowed.regenerate && (
                <button className="secondary" onClick={() => act.mutate("regenerate")} disabled={act.isPending}>
                  {pending("regenerate", "Regenerate", "Regenerating…")}
                </button>
              )}
              {allowed.archive && (
                <button
                  className="danger"
                  disabled={act.isPending}
                  onClick={() => {
                    if (window.confirm(`Archive “${it.title}”? An archived item cannot be edited, approved or regenerated.`)) act.mutate("archive");
                  }}
                >
                  {pending("archive", "Archive", "Archiving…")}
                </button>
              )}
            </div>
          )}
        </div>
        <aside className="side-col">
          <h2>Sources</h2>
          {it.sources.length === 0 ? (
            <p className="small muted">None: the draft is written from the title, topic and instructions.</p>
          ) : (
            <ol className="sources">
              {it.sources.map((s, i) => (
                <li key={i}>{"text" in s ? s.text.slice(0, 160) + (s.text.length > 160 ? "…" : "") : `scraped item ${s.item_id}`}</li>
              ))}
            </ol>
          )}
          {it.instructions && (
            <>
              <h2>Instructions</h2>
              <p className="small">{it.instructions}</p>
            </>
          )}
          <h2>History</h2>
          <ol className="history" data-testid="history" aria-busy={history.isFetching}>
            {!history.data?.length && (
              <li>
                <time>{formatTime(it.created_at)}</time> created
              </li>
            )}
            {rows.map((h) => (
              <li key={h.key} className={`h-${h.kind}`} data-live={h.live || undefined}>
                <time>{formatTime(h.at)}</time> {h.text}
              </li>
            ))}
          </ol>
          <ProblemView error={history.error} action="Loading the history" />
          {live.resets > 0 && <p className="small muted">The live stream was reset; the item was read again.</p>}
        </aside>
      </div>
    </section>
  );
}
