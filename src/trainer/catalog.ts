/**
 * The trainer's catalog: every method (with its hyper-parameters) and attack (with its
 * parameters), and the architectures, as the checked-in `schema/catalog.json` that
 * `python -m trapdoor_trainer describe` generates (`make catalog`; a test fails when they drift).
 *
 * The API serves it and validates launches with it without running Python: each method and attack
 * carries a JSON Schema, the one source of truth that the trainer validates with too.
 */
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { projectPath } from "../paths.ts";

export const CATALOG_PATH = projectPath("schema", "catalog.json");

export interface HyperParameterInfo {
  default: unknown;
  type: "int" | "float" | "bool" | "str";
  doc: string;
  minimum?: number;
  maximum?: number;
  choices?: unknown[];
  nullable?: boolean;
}

/** The subset of JSON Schema the catalog emits (the trainer's validator accepts exactly it). */
export interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean;
  required?: string[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  items?: JsonSchema;
  default?: unknown;
  description?: string;
}

export interface MethodInfo {
  name: string;
  description: string;
  kind: string;
  requiredInputs: string[];
  optionalInputs: string[];
  hyperparameters: Record<string, HyperParameterInfo>;
  hyperparametersSchema: JsonSchema;
}

export interface AttackInfo {
  name: string;
  cleanLabel: boolean;
  description: string;
  params: Record<string, unknown>;
  paramsSchema: JsonSchema;
}

export interface TrainerCatalog {
  catalogVersion: number;
  methods: MethodInfo[];
  attacks: AttackInfo[];
  architectures: string[];
}

/** One problem with a value, named by the dotted field a client sent (`hyperparameters.lambda1`). */
export interface ParamProblem {
  field: string;
  message: string;
}

export class Catalog {
  private readonly ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });
  private readonly validators = new Map<JsonSchema, ValidateFunction>();

  constructor(readonly data: TrainerCatalog) {}

  static load(path: URL | string = CATALOG_PATH): Catalog {
    return new Catalog(JSON.parse(readFileSync(path, "utf8")) as TrainerCatalog);
  }

  method(name: string): MethodInfo | undefined {
    return this.data.methods.find((m) => m.name === name);
  }

  attack(name: string): AttackInfo | undefined {
    return this.data.attacks.find((a) => a.name === name);
  }

  /** Checks `hyperparameters` of `method` against its schema; null when they are acceptable. */
  checkHyperparameters(method: MethodInfo, value: unknown): ParamProblem | null {
    return this.check(method.hyperparametersSchema, value, "hyperparameters", "hyper-parameter");
  }

  /** Checks `attack.params` against the attack's schema; null when they are acceptable. */
  checkAttackParams(attack: AttackInfo, value: unknown): ParamProblem | null {
    return this.check(attack.paramsSchema, value, "attack.params", "parameter");
  }

  private check(schema: JsonSchema, value: unknown, prefix: string, noun: string): ParamProblem | null {
    let validate = this.validators.get(schema);
    if (!validate) {
      validate = this.ajv.compile(schema);
      this.validators.set(schema, validate);
    }
    if (validate(value)) return null;
    return describeProblem(validate.errors?.[0], schema, value, prefix, noun);
  }
}

/**
 * The dotted field name of a JSON pointer into `value`, as the trainer names it: object keys
 * joined with ".", array positions as "[i]" (`attack.params.trigger[1][0]`).
 */
function fieldOf(prefix: string, pointer: string, value: unknown): string {
  let field = prefix;
  let at = value;
  for (const raw of pointer.split("/").slice(1)) {
    const part = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    field += Array.isArray(at) ? `[${part}]` : `.${part}`;
    at = at !== null && typeof at === "object" ? (at as Record<string, unknown>)[part] : undefined;
  }
  return field;
}

function describeProblem(
  error: ErrorObject | undefined,
  schema: JsonSchema,
  value: unknown,
  prefix: string,
  noun: string,
): ParamProblem {
  if (!error) return { field: prefix, message: "is not valid" };
  const field = fieldOf(prefix, error.instancePath, value);
  const known = Object.keys(schema.properties ?? {});
  switch (error.keyword) {
    case "additionalProperties": {
      const name = String(error.params.additionalProperty);
      return {
        field: `${field}.${name}`,
        message: `unknown ${noun}; known: ${known.length ? known.join(", ") : "none"}`,
      };
    }
    case "required":
      return { field: `${field}.${String(error.params.missingProperty)}`, message: "is required" };
    case "type":
      return { field, message: `must be ${article(String(error.params.type))}` };
    case "enum":
      return { field, message: `must be one of ${JSON.stringify(error.params.allowedValues)}` };
    case "minimum":
    case "maximum":
      return { field, message: `must be ${String(error.params.comparison)} ${String(error.params.limit)}` };
    default:
      return { field, message: error.message ?? "is not valid" };
  }
}

const TYPE_WORDS: Record<string, string> = {
  integer: "an integer",
  number: "a number",
  boolean: "true or false",
  string: "a string",
  object: "an object",
  array: "an array",
  null: "null",
};

function article(types: string): string {
  return types
    .split(",")
    .map((t) => TYPE_WORDS[t] ?? t)
    .join(" or ");
}

let shared: Catalog | undefined;

/** The checked-in catalog, read once per process. */
export function trainerCatalog(): Catalog {
  shared ??= Catalog.load();
  return shared;
}
