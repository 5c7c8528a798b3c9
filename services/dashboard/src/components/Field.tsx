import type { ReactNode } from "react";
import type { FieldError } from "../lib/problem";

// A labelled control with its error (client-side or the server's problem+json field error)
// right under it, tied to it by aria-describedby.
export function Field({
  id,
  label,
  errors,
  field,
  hint,
  children,
}: {
  id: string;
  label: string;
  errors: FieldError[];
  field: string;
  hint?: string;
  children: (a11y: { id: string; "aria-invalid": boolean; "aria-describedby"?: string }) => ReactNode;
}) {
  const err = errors.filter((e) => e.field === field).map((e) => e.detail);
  const described = [hint ? `${id}-hint` : "", err.length ? `${id}-err` : ""].filter(Boolean).join(" ") || undefined;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children({ id, "aria-invalid": err.length > 0, "aria-describedby": described })}
      {hint && (
        <p id={`${id}-hint`} className="muted small hint">
          {hint}
        </p>
      )}
      {err.length > 0 && (
        <p id={`${id}-err`} className="field-error" data-testid={`err-${field}`}>
          {err.join("; ")}
        </p>
      )}
    </div>
  );
}
