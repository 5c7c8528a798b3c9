// RFC 9457 problem details: every service answers errors as application/problem+json. The UI
// shows title, detail, the per-field errors and the request id (which finds the request in
// every service's log).

export interface FieldError {
  field: string;
  detail: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  request_id?: string;
  errors?: FieldError[];
}

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.name = "ApiError";
    this.status = problem.status;
    this.problem = problem;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// A Problem from whatever an error response carried: problem+json as sent (missing members
// filled in from the status line), any other JSON or text as the detail.
export function problemFromBody(
  status: number,
  statusText: string,
  contentType: string | null,
  body: string,
): Problem {
  const fallbackTitle = statusText || `HTTP ${status}`;
  const ct = (contentType ?? "").toLowerCase();
  if (ct.includes("json") && body.trim() !== "") {
    try {
      const j: unknown = JSON.parse(body);
      if (isRecord(j)) {
        const errors = Array.isArray(j.errors)
          ? j.errors.filter(isRecord).map((e) => ({
              field: String(e.field ?? ""),
              detail: String(e.detail ?? e.message ?? ""),
            }))
          : undefined;
        return {
          type: typeof j.type === "string" ? j.type : "about:blank",
          title: typeof j.title === "string" ? j.title : fallbackTitle,
          status: typeof j.status === "number" ? j.status : status,
          detail: typeof j.detail === "string" ? j.detail : undefined,
          instance: typeof j.instance === "string" ? j.instance : undefined,
          request_id: typeof j.request_id === "string" ? j.request_id : undefined,
          errors: errors && errors.length ? errors : undefined,
        };
      }
    } catch {
      /* not JSON after all: treated as text below */
    }
  }
  const text = body.trim();
  return {
    type: "about:blank",
    title: fallbackTitle,
    status,
    detail: text ? text.slice(0, 500) : undefined,
  };
}

export async function problemFromResponse(res: Response): Promise<Problem> {
  let body = "";
  try {
    body = await res.text();
  } catch {
    /* the connection broke while reading the error: status line only */
  }
  const p = problemFromBody(res.status, res.statusText, res.headers.get("content-type"), body);
  if (!p.request_id) p.request_id = res.headers.get("x-request-id") ?? undefined;
  return p;
}

// Any thrown value as a Problem (a network failure has status 0).
export function toProblem(err: unknown): Problem {
  if (err instanceof ApiError) return err.problem;
  const message = err instanceof Error ? err.message : String(err);
  return { type: "about:blank", title: "Network error", status: 0, detail: message };
}

// The service behind a prefix is not there (yet): the gateway has no route (404), the upstream
// is down or not deployed (502), or too slow / draining (503, 504).
export function isUnavailable(err: unknown): boolean {
  const s = err instanceof ApiError ? err.status : 0;
  return s === 404 || s === 502 || s === 503 || s === 504 || s === 0;
}
