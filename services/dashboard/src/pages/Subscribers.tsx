import { useEffect, useMemo, useReducer, useRef, useState, type FormEvent, type ReactNode } from "react";
import { Link, NavLink, useParams, useSearchParams } from "react-router-dom";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  countRules,
  createList,
  createSegment,
  csvDataRows,
  csvRecords,
  downloadExport,
  draftToRules,
  errorReport,
  errorReportCsv,
  exportPath,
  getImport,
  getSubscriber,
  importPercent,
  importReducer,
  initialImport,
  listLists,
  listSegments,
  listSubscribers,
  newRow,
  OP_LABEL,
  opsFor,
  RULE_FIELDS,
  rulesToDraft,
  segmentCount,
  startImport,
  SUB_STATUSES,
  type CondRow,
  type RuleDraft,
  type RuleField,
  type Segment,
} from "../lib/subscribers";
import { openStream } from "../lib/stream";
import { ApiError, isUnavailable, type FieldError } from "../lib/problem";
import { useAuth } from "../useAuth";
import { Empty, formatTime, LoadMore, Progress, StatusBadge, Table } from "../components/bits";
import { Field } from "../components/Field";
import { ProblemText, ProblemView } from "../components/ProblemView";
import { ServiceUnavailable } from "./ServicePending";

function Shell({ children }: { children: ReactNode }) {
  return (
    <section>
      <h1>Subscribers</h1>
      <nav className="tabs" aria-label="Subscribers">
        <NavLink to="/subscribers" end>
          People
        </NavLink>
        <NavLink to="/subscribers/lists">Lists</NavLink>
        <NavLink to="/subscribers/segments">Segments</NavLink>
        <NavLink to="/subscribers/import">Import</NavLink>
      </nav>
      {children}
    </section>
  );
}

// Lists by id, for names in tables and pickers.
function useLists() {
  return useQuery({ queryKey: ["lists"], queryFn: ({ signal }) => listLists(signal), retry: false });
}

// ------------------------------------------------------------ search

export function SubscribersPage() {
  const [params, setParams] = useSearchParams();
  const filters = { email: params.get("email") ?? "", status: params.get("status") ?? "", list_id: params.get("list") ?? "" };
  const [email, setEmail] = useState(filters.email);
  const lists = useLists();
  const q = useInfiniteQuery({
    queryKey: ["subscribers", filters],
    queryFn: ({ pageParam, signal }) => listSubscribers(filters, pageParam, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    retry: false,
  });
  const set = (k: string, v: string) => {
    const p = new URLSearchParams(params);
    if (v) p.set(k, v);
    else p.delete(k);
    setParams(p, { replace: true });
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    set("email", email.trim());
  };
  if (q.isError && isUnavailable(q.error) && !q.data)
    return (
      <section>
        <h1>Subscribers</h1>
        <ServiceUnavailable service="subscriber-manager" path="/api/subscribers" error={q.error} what="Search subscribers, manage lists and segments, import and export CSV" />
      </section>
    );
  const seen = new Set<string>();
  const rows = (q.data?.pages ?? []).flatMap((p) => p.items).filter((x) => (seen.has(x.id) ? false : (seen.add(x.id), true)));
  const filtered = !!(filters.email || filters.status || filters.list_id);
  return (
    <Shell>
      <form className="filters" role="search" onSubmit={submit}>
        <div className="grow">
          <label htmlFor="sub-email">E-mail address (exact)</label>
          <input id="sub-email" type="search" value={email} onChange={(e) => setEmail(e.target.value)} placeholder="someone@example.com" />
        </div>
        <div>
          <label htmlFor="sub-status">Status</label>
          <select id="sub-status" value={filters.status} onChange={(e) => set("status", e.target.value)}>
            <option value="">any</option>
            {SUB_STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor="sub-list">List</label>
          <select id="sub-list" value={filters.list_id} onChange={(e) => set("list", e.target.value)}>
            <option value="">any</option>
            {(lists.data?.items ?? []).map((l) => (
              <option key={l.id} value={l.id}>
                {l.name}
              </option>
            ))}
          </select>
        </div>
        <div>
          <button type="submit">Search</button>
        </div>
      </form>
      <p className="muted small">Addresses are stored encrypted: search finds an exact address (any case), not a part of one.</p>
      {q.isPending ? (
        <p className="muted">Loading subscribers…</p>
      ) : q.isError && !q.data ? (
        <ProblemView error={q.error} action="Searching" />
      ) : rows.length === 0 ? (
        filtered ? (
          <Empty title="Nobody matches">
            <p>Check the address (the whole address is needed) or clear a filter.</p>
          </Empty>
        ) : (
          <Empty title="No subscribers yet">
            <p>
              <Link to="/subscribers/import">Import a CSV file</Link> with an <code>email</code> column, or let people subscribe through the public form.
            </p>
          </Empty>
        )
      ) : (
        <>
          <Table label="Subscribers" testId="subscribers" cols={["E-mail", { label: "Name", className: "hide-narrow" }, "Status", { label: "Added", className: "hide-narrow" }]}>
            {rows.map((s) => (
              <tr key={s.id}>
                <td className="wrap">
                  <Link to={`/subscribers/${s.id}`}>{s.email ?? (s.erased ? "(erased)" : s.id)}</Link>
                </td>
                <td className="hide-narrow">{s.name}</td>
                <td>
                  <StatusBadge status={s.status} />
                </td>
                <td className="hide-narrow small">{formatTime(s.created_at)}</td>
              </tr>
            ))}
          </Table>
          <LoadMore q={q} />
        </>
      )}
    </Shell>
  );
}

export function SubscriberDetail() {
  const { id = "" } = useParams();
  const q = useQuery({ queryKey: ["subscriber", id], queryFn: ({ signal }) => getSubscriber(id, signal) });
  const lists = useLists();
  const names = new Map((lists.data?.items ?? []).map((l) => [l.id, l.name]));
  const s = q.data;
  return (
    <Shell>
      <p className="small">
        <Link to="/subscribers">← All subscribers</Link>
      </p>
      {q.isPending ? (
        <p className="muted">Loading…</p>
      ) : !s ? (
        <ProblemView error={q.error} action="Loading the subscriber" />
      ) : (
        <div className="card" data-testid="subscriber">
          <h2 className="wrap">{s.email ?? (s.erased ? "Erased subscriber" : "Address not shown")}</h2>
          {s.email === null && !s.erased && <p className="muted small">The API did not return the decrypted address for your role.</p>}
          <dl className="facts">
            <dt>Name</dt>
            <dd>{s.name ?? "—"}</dd>
            <dt>Status</dt>
            <dd>
              <StatusBadge status={s.status} />
            </dd>
            <dt>Lists</dt>
            <dd>
              {s.lists.length
                ? s.lists.map((l) => (
                    <span key={l.list_id} className="chip">
                      {names.get(l.list_id) ?? l.list_id}
                      {l.status ? ` (${l.status})` : ""}
                    </span>
                  ))
                : "none"}
            </dd>
            <dt>Attributes</dt>
            <dd>
              {Object.keys(s.attributes ?? {}).length ? (
                <code className="pre">{JSON.stringify(s.attributes, null, 1)}</code>
              ) : (
                "none"
              )}
            </dd>
            <dt>Consent</dt>
            <dd>
              {s.consent?.source ?? "—"}
              {s.consent?.time ? `, ${formatTime(s.consent.time)}` : ""}
              {s.consent?.ip ? `, from ${s.consent.ip}` : ""}
            </dd>
            <dt>Added</dt>
            <dd>{formatTime(s.created_at)}</dd>
            <dt>Confirmed</dt>
            <dd>{s.confirmed_at ? formatTime(s.confirmed_at) : "—"}</dd>
          </dl>
        </div>
      )}
    </Shell>
  );
}

// ------------------------------------------------------------ export

function ExportLink({ by, label }: { by: { list_id?: string; segment_id?: string }; label: string }) {
  const [file, setFile] = useState<{ url: string; bytes: number } | null>(null);
  const dl = useMutation({ mutationFn: () => downloadExport(exportPath(by)), onSuccess: setFile });
  useEffect(() => () => void (file && URL.revokeObjectURL(file.url)), [file]);
  const name = `${label.replace(/[^A-Za-z0-9_-]+/g, "-")}.csv`;
  return (
    <span className="export">
      {file ? (
        <a href={file.url} download={name} data-testid="export-link">
          Download {name} ({(file.bytes / 1024).toFixed(1)} KB)
        </a>
      ) : (
        <button className="secondary small-btn" onClick={() => dl.mutate()} disabled={dl.isPending} aria-label={`${dl.isPending ? "Preparing…" : "Export CSV"} ${label}`}>
          {dl.isPending ? "Preparing…" : "Export CSV"}
        </button>
      )}
      <ProblemView error={dl.error} action="Export" />
    </span>
  );
}

// ------------------------------------------------------------ lists

export function ListsPage() {
  const qc = useQueryClient();
  const { canEdit } = useAuth();
  const lists = useLists();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [visibility, setVisibility] = useState("private");
  const [optin, setOptin] = useState("single");
  const [errors, setErrors] = useState<FieldError[]>([]);
  const create = useMutation({
    mutationFn: () => createList({ name: name.trim(), description: description.trim(), visibility, optin }),
    onSuccess: () => {
      setName("");
      setDescription("");
      setErrors([]);
      void qc.invalidateQueries({ queryKey: ["lists"] });
    },
    onError: (e) => setErrors(e instanceof ApiError && e.problem.errors ? e.problem.errors : []),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!name.trim()) return setErrors([{ field: "name", detail: "a name is required" }]);
    create.mutate();
  };
  const items = lists.data?.items ?? [];
  return (
    <Shell>
      {lists.isPending ? (
        <p className="muted">Loading lists…</p>
      ) : lists.isError ? (
        <ProblemView error={lists.error} action="Loading lists" />
      ) : items.length === 0 ? (
        <Empty title="No lists yet">
          <p>{canEdit ? "Create one below, then import subscribers into it." : "Editors create lists."}</p>
        </Empty>
      ) : (
        <Table label="Lists" testId="lists" cols={["List", { label: "Visibility", className: "hide-narrow" }, { label: "Opt-in", className: "hide-narrow" }, { label: "Subscribers", className: "num" }, ...(canEdit ? ["Export"] : [])]}>
          {items.map((l) => (
            <tr key={l.id}>
              <td>
                <Link to={`/subscribers?list=${l.id}`}>{l.name}</Link>
                {l.description && <div className="muted small">{l.description}</div>}
              </td>
              <td className="hide-narrow">{l.visibility}</td>
              <td className="hide-narrow">{l.optin}</td>
              <td className="num">{l.subscriber_count}</td>
              {canEdit && (
                <td>
                  <ExportLink by={{ list_id: l.id }} label={l.name} />
                </td>
              )}
            </tr>
          ))}
        </Table>
      )}
      {canEdit && (
        <form className="card" onSubmit={submit} noValidate aria-labelledby="nl-h">
          <h2 id="nl-h">New list</h2>
          <div className="grid2">
            <Field id="l-name" label="Name" field="name" errors={errors}>
              {(a) => <input {...a} value={name} onChange={(e) => setName(e.target.value)} />}
            </Field>
            <Field id="l-desc" label="Description" field="description" errors={errors}>
              {(a) => <input {...a} value={description} onChange={(e) => setDescription(e.target.value)} />}
            </Field>
            <Field id="l-vis" label="Visibility" field="visibility" errors={errors}>
              {(a) => (
                <select {...a} value={visibility} onChange={(e) => setVisibility(e.target.value)}>
                  <option>private</option>
                  <option>public</option>
                </select>
              )}
            </Field>
            <Field id="l-optin" label="Opt-in" field="optin" errors={errors}>
              {(a) => (
                <select {...a} value={optin} onChange={(e) => setOptin(e.target.value)}>
                  <option>single</option>
                  <option>double</option>
                </select>
              )}
            </Field>
          </div>
          <ProblemView error={create.error} action="Creating the list" />
          <div className="actions">
            <button type="submit" disabled={create.isPending}>
              {create.isPending ? "Creating…" : "Create list"}
            </button>
          </div>
        </form>
      )}
    </Shell>
  );
}

// ------------------------------------------------------------ segments

function SavedCount({ seg }: { seg: Segment }) {
  const q = useQuery({ queryKey: ["segment-count", seg.id], queryFn: ({ signal }) => segmentCount(seg.id, signal) });
  return q.isPending ? <span className="muted">…</span> : q.isError ? <ProblemText error={q.error} /> : <>{q.data.count}</>;
}

function RuleRow({ row, i, lists, onChange, onRemove, error }: { row: CondRow; i: number; lists: Array<{ id: string; name: string }>; onChange: (r: CondRow) => void; onRemove: () => void; error?: string }) {
  const ops = opsFor(row.field);
  const label = `Condition ${i + 1}`;
  return (
    <fieldset className="rule-row" aria-label={label}>
      <legend className="sr-only">{label}</legend>
      <div>
        <label htmlFor={`r${i}-field`}>Field</label>
        <select
          id={`r${i}-field`}
          value={row.field}
          onChange={(e) => {
            const field = e.target.value as RuleField;
            onChange({ ...row, field, op: opsFor(field)[0], value: field === "status" ? "active" : "" });
          }}
        >
          {RULE_FIELDS.map((f) => (
            <option key={f} value={f}>
              {f === "attribute" ? "attribute…" : f}
            </option>
          ))}
        </select>
      </div>
      {row.field === "attribute" && (
        <div>
          <label htmlFor={`r${i}-key`}>Attribute</label>
          <input id={`r${i}-key`} value={row.key} onChange={(e) => onChange({ ...row, key: e.target.value })} placeholder="city" />
        </div>
      )}
      <div>
        <label htmlFor={`r${i}-op`}>Operator</label>
        <select id={`r${i}-op`} value={row.op} onChange={(e) => onChange({ ...row, op: e.target.value })}>
          {ops.map((o) => (
            <option key={o} value={o}>
              {OP_LABEL[o] ?? o}
            </option>
          ))}
        </select>
      </div>
      <div className="grow">
        <label htmlFor={`r${i}-value`}>Value</label>
        {row.field === "list" ? (
          <select id={`r${i}-value`} value={row.value} onChange={(e) => onChange({ ...row, value: e.target.value })}>
            <option value="">choose a list</option>
            {lists.map((l) => (
              <option key={l.id} value={l.id}>
                {l.name}
              </option>
            ))}
          </select>
        ) : (
          <input
            id={`r${i}-value`}
            value={row.value}
            onChange={(e) => onChange({ ...row, value: e.target.value })}
            placeholder={row.op === "before" || row.op === "after" ? "2026-01-31" : row.op === "within_days" ? "30" : row.op === "exists" ? "true" : ""}
            aria-invalid={!!error}
          />
        )}
      </div>
      <label className="check">
        <input type="checkbox" checked={row.negate} onChange={(e) => onChange({ ...row, negate: e.target.checked })} /> not
      </label>
      <button type="button" className="link" onClick={onRemove} aria-label={`Remove condition ${i + 1}`}>
        Remove
      </button>
      {error && <p className="field-error full">{error}</p>}
    </fieldset>
  );
}

export function SegmentsPage() {
  const qc = useQueryClient();
  const { canEdit } = useAuth();
  const segs = useQuery({ queryKey: ["segments"], queryFn: ({ signal }) => listSegments(signal), retry: false });
  const lists = useLists();
  const [name, setName] = useState("");
  const [draft, setDraft] = useState<RuleDraft>({ match: "all", rows: [newRow()] });
  const compiled = useMemo(() => draftToRules(draft), [draft]);
  const rulesJson = compiled.rules ? JSON.stringify(compiled.rules) : "";
  // the live count: the unsaved rules, 400 ms after the last change
  const [debounced, setDebounced] = useState(rulesJson);
  useEffect(() => {
    const t = setTimeout(() => setDebounced(rulesJson), 400);
    return () => clearTimeout(t);
  }, [rulesJson]);
  const count = useQuery({
    queryKey: ["rules-count", debounced],
    queryFn: ({ signal }) => countRules(JSON.parse(debounced), signal),
    enabled: !!debounced,
    retry: false,
    staleTime: 2_000,
  });
  const save = useMutation({
    mutationFn: () => createSegment({ name: name.trim(), rules: compiled.rules! }),
    onSuccess: () => {
      setName("");
      void qc.invalidateQueries({ queryKey: ["segments"] });
    },
  });
  const items = segs.data?.items ?? [];
  const listOpts = (lists.data?.items ?? []).map((l) => ({ id: l.id, name: l.name }));
  const rowErr = (i: number) => compiled.errors.filter((e) => e.row === i).map((e) => e.detail).join("; ") || undefined;
  return (
    <Shell>
      {segs.isPending ? (
        <p className="muted">Loading segments…</p>
      ) : segs.isError ? (
        <ProblemView error={segs.error} action="Loading segments" />
      ) : items.length === 0 ? (
        <Empty title="No segments yet">
          <p>{canEdit ? "Build rules below: the count updates as you type; save it to send to it later." : "Editors define segments."}</p>
        </Empty>
      ) : (
        <Table label="Segments" testId="segments" cols={["Segment", { label: "Rules", className: "hide-narrow" }, { label: "Matches now", className: "num" }, ...(canEdit ? ["Export"] : [])]}>
          {items.map((s) => (
            <tr key={s.id}>
              <td>
                {s.name}{" "}
                {canEdit && rulesToDraft(s.rules) && (
                  <button className="link small" onClick={() => setDraft(rulesToDraft(s.rules)!)} aria-label={`Edit a copy of ${s.name}`}>
                    edit a copy
                  </button>
                )}
              </td>
              <td className="hide-narrow">
                <code className="small">{JSON.stringify(s.rules)}</code>
              </td>
              <td className="num">
                <SavedCount seg={s} />
              </td>
              {canEdit && (
                <td>
                  <ExportLink by={{ segment_id: s.id }} label={s.name} />
                </td>
              )}
            </tr>
          ))}
        </Table>
      )}
      {canEdit && (
        <form
          className="card wide"
          noValidate
          aria-labelledby="seg-h"
          onSubmit={(e) => {
            e.preventDefault();
            if (name.trim() && compiled.rules) save.mutate();
          }}
        >
          <h2 id="seg-h">New segment</h2>
          <label htmlFor="seg-match">Match</label>
          <select id="seg-match" value={draft.match} onChange={(e) => setDraft({ ...draft, match: e.target.value as "all" | "any" })}>
            <option value="all">all of these conditions</option>
            <option value="any">any of these conditions</option>
          </select>
          {draft.rows.map((r, i) => (
            <RuleRow
              key={i}
              i={i}
              row={r}
              lists={listOpts}
              error={rowErr(i)}
              onChange={(n) => setDraft({ ...draft, rows: draft.rows.map((x, j) => (j === i ? n : x)) })}
              onRemove={() => setDraft({ ...draft, rows: draft.rows.filter((_, j) => j !== i) })}
            />
          ))}
          <button type="button" className="secondary" onClick={() => setDraft({ ...draft, rows: [...draft.rows, newRow()] })} disabled={draft.rows.length >= 64}>
            Add a condition
          </button>
          <div className="live-count" aria-live="polite" data-testid="live-count">
            {!compiled.rules ? (
              <span className="muted">{compiled.errors.find((e) => e.row < 0)?.detail ?? "Fix the conditions to see the count."}</span>
            ) : count.isFetching && !count.data ? (
              <span className="muted">Counting…</span>
            ) : count.isError ? (
              <ProblemView error={count.error} action="Counting" />
            ) : count.data ? (
              <span>
                <strong>{count.data.count}</strong> subscribers match <span className="muted small">({count.data.duration_ms.toFixed(0)} ms)</span>
              </span>
            ) : null}
          </div>
          <details>
            <summary>The rules as JSON</summary>
            <code className="pre small">{rulesJson || "—"}</code>
          </details>
          <label htmlFor="seg-name">Segment name</label>
          <input id="seg-name" value={name} onChange={(e) => setName(e.target.value)} />
          <ProblemView error={save.error} action="Saving the segment" />
          <div className="actions">
            <button type="submit" disabled={save.isPending || !compiled.rules || !name.trim()}>
              {save.isPending ? "Saving…" : "Save segment"}
            </button>
          </div>
        </form>
      )}
    </Shell>
  );
}

// ------------------------------------------------------------ import

export function ImportPage() {
  const qc = useQueryClient();
  const { canEdit } = useAuth();
  const lists = useLists();
  const [text, setText] = useState("");
  const [fileName, setFileName] = useState("");
  const [mode, setMode] = useState<"upsert" | "skip">("upsert");
  const [listId, setListId] = useState("");
  const [st, dispatch] = useReducer(importReducer, initialImport);
  const [connected, setConnected] = useState(false);
  const records = useMemo(() => (text ? csvRecords(text) : []), [text]);
  const idRef = useRef<string | null>(null);
  idRef.current = st.id;
  const [sending, setSending] = useState(false);
  const [uploadError, setUploadError] = useState<unknown>(null);

  // import:* is open before the upload: a small file is done before the POST answers
  useEffect(
    () =>
      openStream(["import:*"], (e) => {
        if (e.type === "open") setConnected(true);
        if (e.type === "error") setConnected(false);
        if (e.type === "import.progress") dispatch({ type: "event", data: e.data });
        if ((e.type === "open" || e.type === "reset") && idRef.current) void qc.invalidateQueries({ queryKey: ["import", idRef.current] });
      }),
    [qc],
  );
  const rec = useQuery({
    queryKey: ["import", st.id],
    queryFn: ({ signal }) => getImport(st.id!, signal),
    enabled: !!st.id,
    // a safety net under the stream while it runs
    refetchInterval: st.status === "running" ? 3000 : false,
  });
  useEffect(() => {
    if (rec.data) dispatch({ type: "record", data: rec.data });
  }, [rec.data]);
  // the final record (with the errors) once the stream says it is over
  const doneSeen = st.status === "done" || st.status === "failed";
  useEffect(() => {
    if (doneSeen && st.id) {
      void qc.invalidateQueries({ queryKey: ["import", st.id] });
      void qc.invalidateQueries({ queryKey: ["lists"] });
      void qc.invalidateQueries({ queryKey: ["subscribers"] });
    }
  }, [doneSeen, st.id, qc]);

  const report = useMemo(() => (rec.data && rec.data.status !== "running" ? errorReport(rec.data.errors, records) : []), [rec.data, records]);
  const reportCsvUrl = useMemo(() => (report.length ? `data:text/csv;charset=utf-8,${encodeURIComponent(errorReportCsv(report))}` : ""), [report]);
  if (!canEdit)
    return (
      <Shell>
        <p>Your role cannot import subscribers.</p>
      </Shell>
    );

  const start = async (e: FormEvent) => {
    e.preventDefault();
    setUploadError(null);
    if (!text.trim()) return setUploadError(new ApiError({ type: "about:blank", title: "No file", status: 0, detail: "choose a CSV file (or paste its text) first" }));
    dispatch({ type: "upload", total: csvDataRows(text) });
    setSending(true);
    try {
      const r = await startImport(text, mode, listId || undefined);
      dispatch({ type: "accepted", id: r.id });
    } catch (err) {
      dispatch({ type: "reject" });
      setUploadError(err);
    } finally {
      setSending(false);
    }
  };
  const pct = importPercent(st);
  return (
    <Shell>
      <form className="card wide" onSubmit={(e) => void start(e)} aria-labelledby="imp-h">
        <h2 id="imp-h">Import a CSV file</h2>
        <p className="small muted">
          A header row with an <code>email</code> column; optional <code>name</code>, <code>status</code>, <code>attributes</code> (a JSON object); any other column becomes
          an attribute. Bad rows are skipped and listed with the reason.
        </p>
        <label htmlFor="imp-file">CSV file</label>
        <input
          id="imp-file"
          type="file"
          accept=".csv,text/csv"
          onChange={(e) => {
            const f = e.target.files?.[0];
            if (!f) return;
            setFileName(f.name);
            void f.text().then(setText);
          }}
        />
        <label htmlFor="imp-text">…or paste it</label>
        <textarea id="imp-text" rows={4} className="editor" value={text} onChange={(e) => setText(e.target.value)} placeholder={"email,name,city\nada@example.com,Ada,London"} />
        {text && (
          <p className="small muted" data-testid="rows-in-file">
            {fileName && <>{fileName}: </>}
            {csvDataRows(text)} rows after the header
          </p>
        )}
        <div className="grid2">
          <div>
            <label htmlFor="imp-mode">Existing subscribers</label>
            <select id="imp-mode" value={mode} onChange={(e) => setMode(e.target.value as "upsert" | "skip")}>
              <option value="upsert">update them</option>
              <option value="skip">leave them alone</option>
            </select>
          </div>
          <div>
            <label htmlFor="imp-list">Add to list</label>
            <select id="imp-list" value={listId} onChange={(e) => setListId(e.target.value)}>
              <option value="">no list</option>
              {(lists.data?.items ?? []).map((l) => (
                <option key={l.id} value={l.id}>
                  {l.name}
                </option>
              ))}
            </select>
          </div>
        </div>
        <ProblemView error={uploadError} action="Import" />
        <div className="actions">
          <button type="submit" disabled={sending || st.status === "running"}>
            {sending ? "Uploading…" : "Import"}
          </button>
          <span className={`live live-${connected ? "open" : "connecting"}`} data-testid="live">
            {connected ? "live" : "connecting…"}
          </span>
        </div>
      </form>

      {st.status !== "idle" && (
        <div className="card wide" data-testid="import-progress" aria-live="polite">
          <h2>
            Import {st.status === "uploading" ? "uploading" : st.status}
            <span className="sr-only">.</span>
          </h2>
          <Progress percent={pct} label={`${st.processed} of ${st.total} rows`} />
          <p className="counts" data-testid="import-counts">
            inserted <strong>{st.inserted}</strong> · updated <strong>{st.updated}</strong> · skipped <strong>{st.skipped}</strong> · failed{" "}
            <strong className={st.failed ? "bad-text" : ""}>{st.failed}</strong>
            <span className="muted small"> · {st.liveEvents} live updates</span>
          </p>
          {st.error && <p className="bad-text">{st.error}</p>}
          {rec.isError && <ProblemView error={rec.error} action="Reading the import" />}
          {rec.data && rec.data.status !== "running" && (
            <>
              <h3>Rows not imported</h3>
              {report.length === 0 ? (
                <p className="muted">None: every row went in.</p>
              ) : (
                <>
                  <Table label="Rows not imported" testId="import-errors" cols={[{ label: "Row", className: "num" }, "Problem", "The row"]}>
                    {report.slice(0, 500).map((r) => (
                      <tr key={r.row}>
                        <td className="num">{r.row}</td>
                        <td>{r.error}</td>
                        <td>
                          <code className="small wrap">{r.line}</code>
                        </td>
                      </tr>
                    ))}
                  </Table>
                  {report.length > 500 && <p className="muted small">The first 500 of {report.length}: download them all.</p>}
                  <a href={reportCsvUrl} download="import-errors.csv">
                    Download the error report (CSV)
                  </a>
                </>
              )}
            </>
          )}
        </div>
      )}
    </Shell>
  );
}
