import { toProblem } from "../lib/problem";

// An error as the API described it (problem+json): title, detail, field errors, request id.
export function ProblemView({ error, action }: { error: unknown; action?: string }) {
  if (!error) return null;
  const p = toProblem(error);
  return (
    <div className="problem" role="alert">
      <strong>
        {action ? `${action} failed: ` : ""}
        {p.title}
        {p.status ? ` (${p.status})` : ""}
      </strong>
      {p.detail && <p>{p.detail}</p>}
      {p.errors && (
        <ul>
          {p.errors.map((e, i) => (
            <li key={i}>
              <code>{e.field}</code>: {e.detail}
            </li>
          ))}
        </ul>
      )}
      {p.request_id && <p className="muted small">request id {p.request_id}</p>}
    </div>
  );
}

// The same, in one line (a table cell): title, status and detail.
export function ProblemText({ error }: { error: unknown }) {
  const p = toProblem(error);
  return (
    <span className="bad-text small" title={p.request_id ? `request id ${p.request_id}` : undefined}>
      {p.title}
      {p.status ? ` (${p.status})` : ""}
      {p.detail ? `: ${p.detail}` : ""}
    </span>
  );
}
