import { toProblem } from "../lib/problem";
import { Empty } from "../components/bits";

// What a page says while its service is not there (no route, not running): with what the API
// answered.
export function ServiceUnavailable({ service, path, error, what }: { service: string; path: string; error: unknown; what: string }) {
  const p = toProblem(error);
  return (
    <Empty title={`The ${service} service is not available yet`}>
      <p>
        {what} here once {service} runs behind the gateway. <code>GET {path}</code> answered{" "}
        <strong>
          {p.status || "nothing"} {p.title}
        </strong>
        .
      </p>
      <p className="muted">Start it with <code>make up</code>; this page checks again when you come back.</p>
    </Empty>
  );
}
