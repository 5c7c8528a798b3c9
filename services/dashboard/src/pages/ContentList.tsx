import { useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { useInfiniteQuery, useQueryClient } from "@tanstack/react-query";
import { flattenPages, KINDS, listItems, nextCursor, STATUSES, type Filters } from "../lib/content";
import { subscribe } from "../lib/live";
import { useAuth } from "../useAuth";
import { Empty, formatTime, LoadMore, StatusBadge, Table } from "../components/bits";
import { ProblemView } from "../components/ProblemView";

export function ContentList() {
  const [params, setParams] = useSearchParams();
  const filters: Filters = { status: params.get("status") ?? "", kind: params.get("kind") ?? "", q: params.get("q") ?? "" };
  const [search, setSearch] = useState(filters.q ?? "");
  const { canEdit } = useAuth();
  const qc = useQueryClient();

  const setFilter = (k: keyof Filters, v: string) => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v);
    else next.delete(k);
    setParams(next, { replace: true });
  };

  // the search box filters once typing pauses
  useEffect(() => {
    const t = setTimeout(() => {
      if ((params.get("q") ?? "") !== search.trim()) setFilter("q", search.trim());
    }, 300);
    return () => clearTimeout(t);
  });

  const q = useInfiniteQuery({
    queryKey: ["items", filters],
    queryFn: ({ pageParam, signal }) => listItems(filters, pageParam, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => nextCursor(last),
  });

  // any item changing anywhere refreshes the list (throttled to one refetch a second)
  useEffect(() => {
    let pending: ReturnType<typeof setTimeout> | null = null;
    const close = subscribe(["content:*"], (e) => {
      if (e.type !== "content.item" && e.type !== "reset") return;
      if (!pending)
        pending = setTimeout(() => {
          pending = null;
          void qc.invalidateQueries({ queryKey: ["items"] });
        }, 1000);
    });
    return () => {
      close();
      if (pending) clearTimeout(pending);
    };
  }, [qc]);

  const items = flattenPages(q.data?.pages);
  const filtered = Boolean(filters.status || filters.kind || filters.q);

  return (
    <section>
      <div className="title-row">
        <h1>Content</h1>
        {canEdit && (
          <Link className="button" to="/content/new">
            New brief
          </Link>
        )}
      </div>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <div>
          <label htmlFor="f-status">Status</label>
          <select id="f-status" value={filters.status} onChange={(e) => setFilter("status", e.target.value)}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor="f-kind">Kind</label>
          <select id="f-kind" value={filters.kind} onChange={(e) => setFilter("kind", e.target.value)}>
            <option value="">any</option>
            {KINDS.map((k) => (
              <option key={k}>{k}</option>
            ))}
          </select>
        </div>
        <div className="grow">
          <label htmlFor="f-q">Search titles</label>
          <input id="f-q" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="e.g. solar" />
        </div>
      </form>

      {q.isPending ? (
        <p className="muted">Loading content…</p>
      ) : q.isError && !q.data ? (
        <ProblemView error={q.error} action="Loading content" />
      ) : items.length === 0 ? (
        filtered ? (
          <Empty title="Nothing matches these filters">
            <p>Clear a filter or search for another title.</p>
          </Empty>
        ) : (
          <Empty title="No content yet">
            <p>
              {canEdit ? (
                <>
                  <Link to="/content/new">Create a brief</Link>: paste a few source texts and the engine writes a draft.
                </>
              ) : (
                "Editors create briefs here; there is nothing to read yet."
              )}
            </p>
          </Empty>
        )
      ) : (
        <>
          <Table label="Content items" cols={["Title", "Kind", "Status", { label: "Updated", className: "hide-narrow" }]}>
            {items.map((it) => (
              <tr key={it.id}>
                <td className="wrap">
                  <Link to={`/content/${it.id}`}>{it.title}</Link>
                </td>
                <td>{it.kind}</td>
                <td>
                  <StatusBadge status={it.status} />
                  {it.status === "generating" && it.percent > 0 ? <span className="small"> {it.percent}%</span> : null}
                </td>
                <td className="hide-narrow small">{formatTime(it.updated_at)}</td>
              </tr>
            ))}
          </Table>
          <LoadMore q={q} />
        </>
      )}
    </section>
  );
}
