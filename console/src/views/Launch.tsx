/**
 * Launch: a form generated from `methods` (each hyper-parameter's type, default and bounds);
 * the API's verdict on a bad value is shown at the field it names (extensions.field).
 */
import type { ComponentChildren, JSX } from "preact";
import { useMemo, useState } from "preact/hooks";
import { ErrorMessage } from "../components/ErrorMessage.tsx";
import { useMutation, useQuery, useTitle } from "../hooks.ts";
import { href } from "../router.ts";
import type { DatasetRole, HyperParameter, Method } from "../schema.ts";

type MethodInfo = Pick<Method, "name" | "description" | "kind" | "requiredInputs"> & {
  hyperparameters: HyperParameter[];
};
interface Choice {
  id: string;
  name: string;
  role: DatasetRole;
}
const FORM = `query LaunchForm { methods { name description kind requiredInputs
  hyperparameters { name type default doc minimum maximum choices nullable } }
  datasets(first: 100) { edges { node { id name role status } } } }`;
const LAUNCH = `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`;
const LAUNCHABLE = new Set(["training", "post-training"]);
const DATASET_FIELDS: [string, string, DatasetRole, boolean][] = [
  ["trainDatasetId", "Training set", "TRAIN", true],
  ["holdoutDatasetId", "Clean holdout set", "HOLDOUT", true],
  ["testDatasetId", "Test set", "TEST", true],
  ["asrTestDatasetId", "ASR test set (optional)", "ASR_TEST", false],
];

/** A random idempotency key; getRandomValues also works outside secure contexts. */
function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** The typed value of a hyper-parameter's input, or undefined when left at its default. */
function parseValue(p: HyperParameter, raw: string | boolean): unknown {
  if (p.type === "bool") return raw === true;
  const text = String(raw).trim();
  if (text === "") return p.nullable ? null : undefined;
  if (p.choices?.length) return p.choices.find((c) => String(c) === text) ?? text;
  if (p.type === "int" || p.type === "float") return Number(text);
  return text;
}

/** A labelled control (label for=id, so its name is the label's text alone) and the API's error for it. */
function Field({
  id,
  path,
  label,
  error,
  children,
}: {
  id: string;
  path: string;
  label: string;
  error?: string;
  children: ComponentChildren;
}) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children}
      {error ? (
        <span class="field-error" id={`${path}-error`}>
          {error}
        </span>
      ) : null}
    </div>
  );
}

export function Launch() {
  useTitle("Launch a job");
  const form = useQuery<{
    methods: MethodInfo[];
    datasets: { edges: { node: Choice & { status: string } }[] };
  }>(FORM);
  const launch = useMutation<{ launchTraining: { id: string } }>(LAUNCH);
  const methods = (form.data?.methods ?? []).filter((m) => LAUNCHABLE.has(m.kind));
  const [methodName, setMethodName] = useState("");
  const method = methods.find((m) => m.name === methodName) ?? methods[0];
  const [values, setValues] = useState<Record<string, string>>({});
  const [hp, setHp] = useState<Record<string, string | boolean>>({});
  const [idempotencyKey] = useState(newIdempotencyKey);
  const ready = useMemo(
    () => (form.data?.datasets.edges ?? []).map((e) => e.node).filter((d) => d.status === "READY"),
    [form.data],
  );
  const fieldError = (path: string) => (launch.error?.field === path ? launch.error.message : undefined);
  const errorProps = (path: string) =>
    fieldError(path) ? { "aria-invalid": true, "aria-describedby": `${path}-error` } : {};
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!method) return;
    const hyperparameters: Record<string, unknown> = {};
    for (const p of method.hyperparameters) {
      if (!(p.name in hp)) continue;
      const value = parseValue(p, hp[p.name] as string | boolean);
      if (value !== undefined) hyperparameters[p.name] = value;
    }
    const input: Record<string, unknown> = { method: method.name, idempotencyKey, hyperparameters };
    for (const [field] of DATASET_FIELDS) if (values[field]) input[field] = values[field];
    if (values.architecture?.trim()) input.architecture = values.architecture.trim();
    if (values.target?.trim()) input.target = Number(values.target);
    if (values.seed?.trim()) input.seed = Number(values.seed);
    if (values.accelerator) input.resources = { accelerator: values.accelerator };
    const launched = await launch.run({ input });
    if (launched) window.location.hash = href.job(launched.launchTraining.id);
  };
  const set = (name: string) => (e: Event) =>
    setValues({ ...values, [name]: (e.target as HTMLInputElement).value });

  return (
    <section aria-labelledby="launch-title">
      <h1 id="launch-title">Launch a job</h1>
      <ErrorMessage error={form.error} retry={form.reload} />
      <form class="card launch" onSubmit={submit} noValidate>
        <fieldset>
          <legend>Method and data</legend>
          <Field id="field-method" path="method" error={fieldError("method")} label="Method">
            <select
              id="field-method"
              value={method?.name ?? ""}
              onChange={(e) => {
                setMethodName((e.target as HTMLSelectElement).value);
                setHp({});
              }}
              {...errorProps("method")}
            >
              {methods.map((m) => (
                <option key={m.name} value={m.name}>
                  {m.name}
                </option>
              ))}
            </select>
          </Field>
          {method ? <p class="dim">{method.description}</p> : null}
          {DATASET_FIELDS.map(([field, label, role, required]) => (
            <Field key={field} id={`field-${field}`} path={field} error={fieldError(field)} label={label}>
              <select
                id={`field-${field}`}
                value={values[field] ?? ""}
                onChange={set(field)}
                required={required}
                {...errorProps(field)}
              >
                <option value="">{required ? "choose a READY dataset" : "none"}</option>
                {ready
                  .filter((d) => d.role === role)
                  .map((d) => (
                    <option key={d.id} value={d.id}>
                      {d.name} ({d.id.slice(0, 8)})
                    </option>
                  ))}
              </select>
            </Field>
          ))}
          <Field
            id="field-architecture"
            path="architecture"
            error={fieldError("architecture")}
            label="Architecture"
          >
            <input
              id="field-architecture"
              value={values.architecture ?? ""}
              onInput={set("architecture")}
              placeholder="the method's default"
              {...errorProps("architecture")}
            />
          </Field>
          <Field
            id="field-target"
            path="target"
            error={fieldError("target")}
            label="Attack target class (optional)"
          >
            <input
              id="field-target"
              type="number"
              min={0}
              value={values.target ?? ""}
              onInput={set("target")}
              {...errorProps("target")}
            />
          </Field>
          <Field id="field-seed" path="seed" error={fieldError("seed")} label="Seed">
            <input
              id="field-seed"
              type="number"
              value={values.seed ?? ""}
              onInput={set("seed")}
              placeholder="0"
              {...errorProps("seed")}
            />
          </Field>
          <Field
            id="field-accelerator"
            path="resources.accelerator"
            error={fieldError("resources.accelerator")}
            label="Accelerator"
          >
            <select
              id="field-accelerator"
              value={values.accelerator ?? ""}
              onChange={set("accelerator")}
              {...errorProps("resources.accelerator")}
            >
              <option value="">the service's default</option>
              <option value="CPU">CPU</option>
              <option value="GPU">GPU</option>
            </select>
          </Field>
        </fieldset>
        {method ? (
          <fieldset>
            <legend>Hyper-parameters of {method.name}</legend>
            {method.hyperparameters.map((p) => (
              <HyperParameterField
                key={`${method.name}.${p.name}`}
                p={p}
                value={hp[p.name]}
                onChange={(v) => setHp({ ...hp, [p.name]: v })}
                error={fieldError(`hyperparameters.${p.name}`)}
              />
            ))}
          </fieldset>
        ) : null}
        <ErrorMessage error={launch.error} />
        <button type="submit" disabled={launch.busy || !method}>
          Launch
        </button>
      </form>
    </section>
  );
}

function HyperParameterField({
  p,
  value,
  onChange,
  error,
}: {
  p: HyperParameter;
  value: string | boolean | undefined;
  onChange(v: string | boolean): void;
  error: string | undefined;
}) {
  const id = `hp-${p.name}`;
  const describedBy = `${id}-doc${error ? ` hyperparameters.${p.name}-error` : ""}`;
  const common = { id, "aria-describedby": describedBy, "aria-invalid": error ? true : undefined };
  const bounds = [
    p.minimum !== null && p.minimum !== undefined ? `≥ ${p.minimum}` : "",
    p.maximum !== null && p.maximum !== undefined ? `≤ ${p.maximum}` : "",
  ]
    .filter(Boolean)
    .join(", ");
  let control: JSX.Element;
  if (p.type === "bool") {
    control = (
      <input
        type="checkbox"
        {...common}
        checked={value === undefined ? p.default === true : value === true}
        onChange={(e) => onChange((e.target as HTMLInputElement).checked)}
      />
    );
  } else if (p.choices?.length) {
    control = (
      <select
        {...common}
        value={value === undefined ? String(p.default ?? "") : String(value)}
        onChange={(e) => onChange((e.target as HTMLSelectElement).value)}
      >
        {p.choices.map((c) => (
          <option key={String(c)} value={String(c)}>
            {String(c)}
          </option>
        ))}
      </select>
    );
  } else {
    const numeric = p.type === "int" || p.type === "float";
    const text = {
      ...common,
      placeholder:
        p.default === null || p.default === undefined
          ? p.nullable
            ? "default (none)"
            : ""
          : String(p.default),
      value: typeof value === "string" ? value : "",
      onInput: (e: Event) => onChange((e.target as HTMLInputElement).value),
    };
    control = numeric ? (
      <input type="number" step={p.type === "int" ? 1 : "any"} {...text} />
    ) : (
      <input type="text" {...text} />
    );
  }
  return (
    <div class="hp">
      <label for={id}>
        <span class="mono">{p.name}</span>{" "}
        <span class="dim">
          ({p.type}
          {bounds ? `, ${bounds}` : ""})
        </span>
      </label>
      {control}
      <span class="doc" id={`${id}-doc`}>
        {p.doc}
        {p.doc.endsWith(".") ? "" : "."}
        {p.default !== null && p.default !== undefined ? ` Default: ${String(p.default)}.` : ""}
      </span>
      {error ? (
        <span class="field-error" id={`hyperparameters.${p.name}-error`}>
          {error}
        </span>
      ) : null}
    </div>
  );
}
