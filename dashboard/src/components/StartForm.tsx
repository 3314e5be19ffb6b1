/**
 * The Start form of a pipeline: fields built from its input schema when it is flat (a
 * JSON editor otherwise), the server's refusals shown next to it, and the new run's page
 * opened on success. One idempotency key per filled-in form: a double click (or a
 * resent request) starts one run; any change to the input takes a fresh key.
 */
import type { JSX } from 'preact';
import { useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, startRun, type PipelineInfo } from '../api.js';
import { Link, navigate, paths } from '../router.js';
import { fieldOfMessage, flatFields, initialValue, inputOf, newIdempotencyKey, type Field, type FieldValue } from '../schema-form.js';

interface Refusal {
  message: string;
  field: string | null;
  runId: string | null;
}

function FieldInput({ f, id, value, onChange, error }: { f: Field; id: string; value: FieldValue; onChange: (v: FieldValue) => void; error: boolean }): JSX.Element {
  const common = { id, name: f.name, 'aria-invalid': error ? ('true' as const) : undefined, 'aria-describedby': f.description === null ? undefined : `${id}-hint` };
  if (f.kind === 'boolean') return <input type="checkbox" {...common} checked={value === true} onChange={(e) => onChange((e.target as HTMLInputElement).checked)} />;
  if (f.kind === 'enum') {
    return (
      <select {...common} value={typeof value === 'string' ? value : ''} required={f.required} onChange={(e) => onChange((e.target as HTMLSelectElement).value)}>
        {!f.required && <option value="">—</option>}
        {f.options.map((o, i) => (
          <option key={String(o)} value={String(i)}>
            {String(o)}
          </option>
        ))}
      </select>
    );
  }
  const text = typeof value === 'string' ? value : '';
  const onInput = (e: Event): void => onChange((e.target as HTMLInputElement).value);
  if (f.kind === 'string') return <input {...common} type="text" required={f.required} value={text} onInput={onInput} />;
  return (
    <input
      {...common}
      type="number"
      step={f.kind === 'integer' ? 1 : 'any'}
      min={f.minimum ?? undefined}
      max={f.maximum ?? undefined}
      required={f.required}
      value={text}
      onInput={onInput}
    />
  );
}

/** The form; `blocked` (a sentence) disables its button; `onRefused` tells the page to reload the pipeline. */
export function StartForm({ pipeline, blocked, onRefused }: { pipeline: PipelineInfo; blocked: string | null; onRefused: () => void }): JSX.Element {
  const fields = useMemo(() => (pipeline.input_schema === null ? null : flatFields(pipeline.input_schema)), [pipeline.input_schema]);
  const [values, setValues] = useState<Record<string, FieldValue>>(() => Object.fromEntries((fields ?? []).map((f) => [f.name, initialValue(f)])));
  const [json, setJson] = useState('{}');
  const [busy, setBusy] = useState(false);
  const [refusal, setRefusal] = useState<Refusal | null>(null);
  const key = useRef(newIdempotencyKey());
  const base = `start-${pipeline.pipeline_id}`;

  const changed = (): void => {
    key.current = newIdempotencyKey();
    setRefusal(null);
  };

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    let input: unknown;
    if (fields === null) {
      try {
        input = json.trim() === '' ? null : (JSON.parse(json) as unknown);
      } catch (error) {
        setRefusal({ message: `The input is not JSON: ${(error as Error).message}`, field: null, runId: null });
        return;
      }
    } else {
      input = inputOf(fields, values);
    }
    setBusy(true);
    setRefusal(null);
    try {
      const run = await startRun(pipeline.pipeline_id, input, key.current);
      navigate(paths.run(run.run_id));
    } catch (error) {
      const message = (error as Error).message;
      const runId = error instanceof ApiError && typeof error.details.run_id === 'string' ? error.details.run_id : null;
      setRefusal({ message, field: fields === null ? null : fieldOfMessage(message, fields), runId });
      if (error instanceof ApiError && error.code === 'already_running') onRefused();
    } finally {
      setBusy(false);
    }
  };

  const schemaNote =
    pipeline.input_schema === null ? 'This pipeline declares no input schema: any JSON.' : fields === null ? 'The input schema is not flat: write the input as JSON.' : null;

  return (
    <form class="start-form" onSubmit={(e) => void submit(e)} aria-label={`Start ${pipeline.pipeline_id}`} data-testid="start-form" noValidate>
      {fields === null ? (
        <div class="field">
          <label for={`${base}-json`}>Input (JSON)</label>
          <textarea
            id={`${base}-json`}
            class="mono"
            rows={6}
            spellcheck={false}
            value={json}
            onInput={(e) => {
              setJson((e.target as HTMLTextAreaElement).value);
              changed();
            }}
            data-testid="json-input"
          />
          {schemaNote !== null && <p class="muted small">{schemaNote}</p>}
          {pipeline.input_schema !== null && (
            <details class="small">
              <summary>Input schema</summary>
              <pre class="json">{JSON.stringify(pipeline.input_schema, null, 2)}</pre>
            </details>
          )}
        </div>
      ) : (
        fields.map((f) => {
          const id = `${base}-${f.name}`;
          const error = refusal?.field === f.name;
          return (
            <div class={`field ${f.kind === 'boolean' ? 'check' : ''}`} key={f.name} data-field={f.name}>
              <label for={id}>
                {f.name}
                {f.required && (
                  <span class="required" title="required">
                    {' '}
                    *<span class="sr-only"> (required)</span>
                  </span>
                )}
                <span class="muted small"> {f.kind}</span>
              </label>
              <FieldInput
                f={f}
                id={id}
                value={values[f.name] ?? initialValue(f)}
                error={error}
                onChange={(v) => {
                  setValues((old) => ({ ...old, [f.name]: v }));
                  changed();
                }}
              />
              {f.description !== null && (
                <span class="muted small" id={`${id}-hint`}>
                  {f.description}
                </span>
              )}
              {error && (
                <span class="error small" data-testid="field-error">
                  {refusal.message}
                </span>
              )}
            </div>
          );
        })
      )}
      {fields !== null && fields.some((f) => f.required) && <p class="muted small">* required</p>}
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy || blocked !== null} data-testid="start-submit">
          {busy ? 'Starting…' : 'Start run'}
        </button>
      </div>
      {refusal !== null && (
        <p class="error" role="alert" data-testid="start-error">
          {refusal.message}
          {refusal.runId !== null && (
            <>
              {' '}
              <Link href={paths.run(refusal.runId)}>Open run {refusal.runId}</Link>
            </>
          )}
        </p>
      )}
    </form>
  );
}
