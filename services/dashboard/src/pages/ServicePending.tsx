import { useQuery } from "@tanstack/react-query";
import { api } from "../lib/api";
import { isUnavailable, toProblem } from "../lib/problem";
import { Empty } from "../components/bits";
import { ProblemView } from "../components/ProblemView";

// A page whose service is still being written: says so, with what the API answered.
export function ServicePending({ title, service, probe, what }: { title: string; service: string; probe: string; what: string }) {
  const q = useQuery({ queryKey: ["probe", probe], queryFn: ({ signal }) => api<unknown>(probe, { signal }), retry: false });
  return (
    <section>
      <h1>{title}</h1>
      {q.isPending ? (
        <p className="muted">Asking the {service} service…</p>
      ) : q.isError && isUnavailable(q.error) ? (
        <Empty title={`The ${service} service is not available yet`}>
          <p>
            {what} here once {service} runs behind the gateway. <code>GET {probe.split("?")[0]}</code> answered{" "}
            <strong>
              {toProblem(q.error).status || "nothing"} {toProblem(q.error).title}
            </strong>
            .
          </p>
          <p className="muted">Start it with <code>make up</code> when it is built; this page checks again when you come back.</p>
        </Empty>
      ) : q.isError ? (
        <ProblemView error={q.error} />
      ) : (
        <Empty title={`${service} answers`}>
          <p>{what}: the pages for it come in the next version of the dashboard.</p>
        </Empty>
      )}
    </section>
  );
}
