import { useEffect, useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { createItem, KINDS, validateBrief, type Brief, type Kind, type Source } from "../lib/content";
import { api } from "../lib/api";
import { isUnavailable } from "../lib/problem";
import { handoff } from "../lib/live";
import { useAuth } from "../useAuth";
import { ProblemView } from "../components/ProblemView";

interface ScrapedItem {
  id: string;
  title?: string;
  url?: string;
}

export function ContentNew() {
  const nav = useNavigate();
  const qc = useQueryClient();
  const { canEdit } = useAuth();
  const [title, setTitle] = useState("");
  const [kind, setKind] = useState<Kind>("article");
  const [topic, setTopic] = useState("");
  const [instructions, setInstructions] = useState("");
  const [texts, setTexts] = useState<string[]>([""]);
  // "Use in a new brief" on a scraped item (Sources) comes here with ?item_id=
  const [params] = useSearchParams();
  const fromItem = params.get("item_id");
  const [picked, setPicked] = useState<string[]>(fromItem ? [fromItem] : []);
  const [fieldErrors, setFieldErrors] = useState<Array<{ field: string; detail: string }>>([]);

  // scraped items to pick from: only shown once the scraper answers
  const scraped = useQuery({
    queryKey: ["scraper-items"],
    queryFn: ({ signal }) => api<{ items: ScrapedItem[] }>("/api/scraper/items?limit=50", { signal }),
    retry: false,
  });
  const fromItemQ = useQuery({
    queryKey: ["scraped-item", fromItem],
    queryFn: ({ signal }) => api<ScrapedItem>(`/api/scraper/items/${encodeURIComponent(fromItem ?? "")}`, { signal }),
    enabled: !!fromItem,
    retry: false,
  });
  const listed = scraped.data?.items ?? [];
  const scrapedItems: ScrapedItem[] =
    fromItem && !listed.some((s) => s.id === fromItem) ? [fromItemQ.data ?? { id: fromItem }, ...listed] : listed;

  // listen before creating, so a fast generation is seen from its first event (lib/live.ts)
  useEffect(() => {
    handoff.start();
    return () => handoff.release();
  }, []);

  const create = useMutation({
    mutationFn: async (b: Brief) => {
      await handoff.ready();
      return createItem(b);
    },
    onSuccess: (item) => {
      void qc.invalidateQueries({ queryKey: ["items"] });
      nav(`/content/${item.id}`);
    },
  });

  if (!canEdit)
    return (
      <p>
        Your role cannot create briefs. <Link to="/content">Back to content</Link>
      </p>
    );

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const sources: Source[] = [
      ...texts.filter((t) => t.trim()).map((text) => ({ text })),
      ...picked.map((item_id) => ({ item_id })),
    ];
    const brief: Brief = { title: title.trim(), kind, topic: topic.trim(), instructions: instructions.trim(), sources };
    const errs = validateBrief(brief);
    setFieldErrors(errs);
    if (!errs.length) create.mutate(brief);
  };
  const errFor = (f: string) => fieldErrors.find((e) => e.field === f)?.detail;

  return (
    <form className="card" onSubmit={submit} noValidate aria-labelledby="new-h">
      <h1 id="new-h">New brief</h1>
      <label htmlFor="b-title">Title</label>
      <input id="b-title" value={title} onChange={(e) => setTitle(e.target.value)} required maxLength={300} aria-invalid={!!errFor("title")} aria-describedby="b-title-err" />
      {errFor("title") && <p id="b-title-err" className="field-error">{errFor("title")}</p>}

      <label htmlFor="b-kind">Kind</label>
      <select id="b-kind" value={kind} onChange={(e) => setKind(e.target.value as Kind)}>
        {KINDS.map((k) => (
          <option key={k}>{k}</option>
        ))}
      </select>

      <label htmlFor="b-topic">Topic</label>
      <input id="b-topic" value={topic} onChange={(e) => setTopic(e.target.value)} maxLength={500} />

      <label htmlFor="b-instructions">Instructions</label>
      <textarea id="b-instructions" rows={3} value={instructions} onChange={(e) => setInstructions(e.target.value)} maxLength={4000} />

      <fieldset>
        <legend>Source texts</legend>
        {texts.map((t, i) => (
          <div className="source" key={i}>
            <label htmlFor={`b-src-${i}`}>Source {i + 1}</label>
            <textarea
              id={`b-src-${i}`}
              rows={4}
              value={t}
              onChange={(e) => setTexts(texts.map((x, j) => (j === i ? e.target.value : x)))}
              aria-invalid={!!errFor(`sources[${i}]`)}
            />
            {texts.length > 1 && (
              <button type="button" className="link" onClick={() => setTexts(texts.filter((_, j) => j !== i))}>
                Remove source {i + 1}
              </button>
            )}
          </div>
        ))}
        {texts.length + picked.length < 20 && (
          <button type="button" className="secondary" onClick={() => setTexts([...texts, ""])}>
            Add a source text
          </button>
        )}
      </fieldset>

      {scraped.isError && !isUnavailable(scraped.error) && <ProblemView error={scraped.error} action="Loading scraped items" />}
      {scraped.isSuccess && scrapedItems.length === 0 && (
        <p className="small muted" data-testid="no-scraped">
          No scraped items to pick yet: <Link to="/sources">register a source</Link> and run it, or paste source texts above.
        </p>
      )}
      {scrapedItems.length > 0 && (
        <fieldset data-testid="scraped-picker">
          <legend>Scraped items</legend>
          {scrapedItems.map((s) => (
            <label key={s.id} className="check">
              <input
                type="checkbox"
                checked={picked.includes(s.id)}
                onChange={(e) => setPicked(e.target.checked ? [...picked, s.id] : picked.filter((p) => p !== s.id))}
              />
              {s.title || s.url || s.id}
            </label>
          ))}
        </fieldset>
      )}

      {fieldErrors.filter((e) => e.field !== "title").map((e) => (
        <p key={e.field} className="field-error">
          {e.field}: {e.detail}
        </p>
      ))}
      <ProblemView error={create.error} action="Creating the brief" />
      <div className="actions">
        <button type="submit" disabled={create.isPending}>
          {create.isPending ? "Creating…" : "Create and generate"}
        </button>
        <Link to="/content">Cancel</Link>
      </div>
    </form>
  );
}
