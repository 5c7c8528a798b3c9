import type { ReactNode } from "react";
import { ProblemView } from "./ProblemView";

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge badge-${status}`}>{status}</span>;
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <h2>{title}</h2>
      {children}
    </div>
  );
}

export function Progress({ percent, label }: { percent: number | null; label: string }) {
  return (
    <div className="progress-wrap">
      <div
        className="progress"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent ?? undefined}
      >
        <div className="progress-bar" style={{ width: `${percent ?? 0}%` }} />
      </div>
      <span className="small">
        {label}
        {percent !== null ? ` ${percent}%` : ""}
      </span>
    </div>
  );
}

export function formatTime(iso: string | number): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export type Column = string | { label: string; className?: string };

// A list table in a region of its own that scrolls sideways on a narrow screen (focusable, so a
// keyboard can scroll it, and named, so a screen reader can tell it from the others).
export function Table({ label, testId, cols, children }: { label: string; testId?: string; cols: Column[]; children: ReactNode }) {
  return (
    <div className="scroll-x" tabIndex={0} role="region" aria-label={label}>
      <table className="list" data-testid={testId}>
        <thead>
          <tr>
            {cols.map((c) => {
              const col = typeof c === "string" ? { label: c } : c;
              return (
                <th key={col.label} scope="col" className={col.className}>
                  {col.label}
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

// The end of a cursor-paged list: "Load more" while there is more, and what went wrong loading it.
export function LoadMore({ q }: { q: { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage: () => unknown; isError: boolean; error: unknown } }) {
  return (
    <>
      {q.hasNextPage && (
        <button className="secondary" onClick={() => void q.fetchNextPage()} disabled={q.isFetchingNextPage}>
          {q.isFetchingNextPage ? "Loading…" : "Load more"}
        </button>
      )}
      {q.isError && <ProblemView error={q.error} action="Loading more" />}
    </>
  );
}
