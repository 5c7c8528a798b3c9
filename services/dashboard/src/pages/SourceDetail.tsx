import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { formatInterval, getScrapedItem, getSource, isTerminal, listRuns, listScrapedItems, mergeRun, type ScrapedItem } from "../lib/scraper";
import { useAuth } from "../useAuth";
import { Empty, formatTime, LoadMore, StatusBadge, Table } from "../components/bits";
import { ProblemView } from "../components/ProblemView";
import { RunState, SourceActions, useLiveRuns } from "./Sources";

function ItemView({ item, canEdit }: { item: ScrapedItem; canEdit: boolean }) {
  const full = useQuery({ queryKey: ["scraped-item", item.id], queryFn: ({ signal }) => getScrapedItem(item.id, signal) });
  const it = full.data ?? item;
  return (
    <div className="item-view" data-testid="item-view">
      <p className="small muted">
        {it.author && <>by {it.author} · </>}
        {it.published && <>published {formatTime(it.published)} · </>}
        {it.lang && <>{it.lang} · </>}
        <a href={it.url} target="_blank" rel="noreferrer noopener">
          {it.url}
        </a>
      </p>
      {full.isPending ? <p className="muted">Loading the text…</p> : <ProblemView error={full.error} action="Loading the item" />}
      {it.text && <div className="item-text">{it.text.split(/\n\s*\n/).slice(0, 8).map((p, i) => <p key={i}>{p}</p>)}</div>}
      {canEdit && (
        <Link className="button" to={`/content/new?item_id=${encodeURIComponent(it.id)}`}>
          Use in a new brief
        </Link>
      )}
    </div>
  );
}

export function SourceDetail() {
  const { id = "" } = useParams();
  const qc = useQueryClient();
  const nav = useNavigate();
  const { canEdit } = useAuth();
  const [open, setOpen] = useState<string | null>(null);
  const src = useQuery({ queryKey: ["source", id], queryFn: ({ signal }) => getSource(id, signal) });
  const runsQ = useQuery({ queryKey: ["runs", id], queryFn: ({ signal }) => listRuns(id, signal) });
  const items = useInfiniteQuery({
    queryKey: ["scraped", id],
    queryFn: ({ pageParam, signal }) => listScrapedItems(id, pageParam, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["runs", id] });
    void qc.invalidateQueries({ queryKey: ["scraped", id] });
    void qc.invalidateQueries({ queryKey: ["source", id] });
  };
  const { runs: live, connected } = useLiveRuns(`source:${id}`, refresh);
  const liveRun = live[id];
  const s = src.data;
  if (src.isPending) return <p className="muted">Loading the source…</p>;
  if (!s) return <ProblemView error={src.error} action="Loading the source" />;
  const runList = (runsQ.data?.runs ?? []).map((r) => mergeRun(r, liveRun));
  const latestRunning = runList[0] && !isTerminal(runList[0].state);
  const seen = new Set<string>();
  const itemList = (items.data?.pages ?? []).flatMap((p) => p.items).filter((x) => (seen.has(x.id) ? false : (seen.add(x.id), true)));
  return (
    <section>
      <p className="small">
        <Link to="/sources">← Sources</Link>
      </p>
      <div className="title-row">
        <h1 className="wrap">{s.name || s.url}</h1>
        <span className={`live live-${connected ? "open" : "connecting"}`} data-testid="live">
          {connected ? "live" : "connecting…"}
        </span>
      </div>
      <p className="small">
        <StatusBadge status={s.status} /> {s.kind} · every {formatInterval(s.interval_seconds)} · at most {s.max_items} items ·{" "}
        <span className="wrap">{s.url}</span>
        {s.include?.length ? <> · include {s.include.map((p) => <code key={p}>{p} </code>)}</> : null}
        {s.exclude?.length ? <> · exclude {s.exclude.map((p) => <code key={p}>{p} </code>)}</> : null}
      </p>
      <div className="live-run" aria-live="polite">
        <RunState run={liveRun ?? (runList[0] ? { ...runList[0], run_id: runList[0].id, error_summary: runList[0].error_summary ?? "", events: 0 } : undefined)} />
      </div>
      {canEdit && <SourceActions s={s} running={!!latestRunning || (!!liveRun && !isTerminal(liveRun.state))} onChanged={(deleted) => (deleted ? nav("/sources") : refresh())} />}

      <h2>Runs</h2>
      {runsQ.isError ? (
        <ProblemView error={runsQ.error} action="Loading runs" />
      ) : runList.length === 0 ? (
        <p className="muted">No runs yet. {canEdit ? "“Run now” starts one; otherwise the schedule does." : ""}</p>
      ) : (
        <Table label="Runs" testId="runs" cols={["Started", "State", { label: "Trigger", className: "hide-narrow" }, { label: "Fetched", className: "num" }, { label: "New", className: "num" }, { label: "Unchanged", className: "num" }, { label: "Failed", className: "num" }]}>
          {runList.map((r) => (
            <tr key={r.id}>
              <td className="small">{formatTime(r.started_at)}</td>
              <td>
                {r.state}
                {r.error_summary && <div className="bad-text small pre">{r.error_summary}</div>}
              </td>
              <td className="hide-narrow">{r.trigger}</td>
              <td className="num">{r.fetched}</td>
              <td className="num">{r.new}</td>
              <td className="num">{r.unchanged}</td>
              <td className="num">{r.failed}</td>
            </tr>
          ))}
        </Table>
      )}

      <h2>Scraped items</h2>
      {items.isPending ? (
        <p className="muted">Loading items…</p>
      ) : items.isError && !items.data ? (
        <ProblemView error={items.error} action="Loading items" />
      ) : itemList.length === 0 ? (
        <Empty title="No items yet">
          <p>Items show up here, live, as a run stores them. {canEdit ? "Start one with “Run now”." : ""}</p>
        </Empty>
      ) : (
        <>
          <ul className="items" data-testid="scraped-items">
            {itemList.map((it) => (
              <li key={it.id}>
                <button className="link item-title" aria-expanded={open === it.id} onClick={() => setOpen(open === it.id ? null : it.id)}>
                  {it.title || it.url}
                </button>{" "}
                <span className="muted small">{it.published ? formatTime(it.published) : ""}</span>
                {open === it.id && <ItemView item={it} canEdit={canEdit} />}
              </li>
            ))}
          </ul>
          <LoadMore q={items} />
        </>
      )}
    </section>
  );
}
