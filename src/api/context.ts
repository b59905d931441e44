import { HeaderMap } from "@apollo/server";
import DataLoader from "dataloader";
import { GraphQLError } from "graphql";
import type { DatasetRow, DatasetService } from "../datasets/service.ts";
import type { JobRow, JobService, JobUpdateSource } from "../jobs/service.ts";
import type { StudyService } from "../jobs/studies.ts";
import type { ModelService } from "../models/service.ts";
import type { AuditLog } from "../tenants/audit.ts";
import type { ConcurrencyLimiter } from "../tenants/concurrency.ts";
import type { QuotaService } from "../tenants/quota.ts";
import type { RateLimiter } from "../tenants/rate-limiter.ts";
import type { Tenant, TenantService } from "../tenants/service.ts";
import type { WebhookService } from "../webhooks/service.ts";

/** What the API serves from: services only (resolvers never reach the database or the store). */
export interface Services {
  tenants: TenantService;
  datasets: DatasetService;
  jobs: JobService;
  studies: StudyService;
  webhooks: WebhookService;
  models: ModelService;
  quotas: QuotaService;
  audit: AuditLog;
  /** Per-tenant request limit shared by the replicas (429 RATE_LIMITED past it). */
  rateLimiter: RateLimiter;
  /** Per-tenant requests in flight on this replica (429 RATE_LIMITED past it). */
  concurrency: ConcurrencyLimiter;
  /** This process's LISTEN connection for job updates (subscriptions wait on it). */
  jobUpdates: JobUpdateSource;
  /** The readiness of what the API needs (database, object store): "ok" or why not, by name. */
  ready(): Promise<Record<string, string>>;
}

/** What every resolver gets: the caller's tenant (every query is scoped by it) and the services. */
export interface Context extends Services {
  tenant: Tenant;
  /** Request-scoped batching: N `job(id:)` fields in one operation are one query. */
  loaders: Loaders;
}

export interface Loaders {
  job: DataLoader<string, JobRow | null>;
  dataset: DataLoader<string, DatasetRow | null>;
}

function loadersFor(services: Services, tenantId: string): Loaders {
  return {
    job: new DataLoader((ids) => services.jobs.getMany(tenantId, ids)),
    dataset: new DataLoader((ids) => services.datasets.getMany(tenantId, ids)),
  };
}

const unauthenticated = (message: string) =>
  new GraphQLError(message, { extensions: { code: "UNAUTHENTICATED", http: { status: 401 } } });

/** `Bearer <key>` (an HTTP header, or graphql-ws connectionParams) → the key's tenant. */
export async function authenticate(tenants: TenantService, authorization: unknown): Promise<Tenant> {
  const match = /^Bearer\s+(\S+)$/i.exec(typeof authorization === "string" ? authorization : "");
  if (!match?.[1]) throw unauthenticated("send an API key as `Authorization: Bearer <key>`");
  const tenant = await tenants.forKey(match[1]);
  if (!tenant) throw unauthenticated("this API key is unknown or revoked");
  return tenant;
}

/** 429 with Retry-After; `retryAfterSeconds` tells GraphQL clients the same. */
function rateLimited(message: string, retryAfterSeconds: number): GraphQLError {
  return new GraphQLError(message, {
    extensions: {
      code: "RATE_LIMITED",
      retryAfterSeconds,
      http: { status: 429, headers: new HeaderMap([["retry-after", String(retryAfterSeconds)]]) },
    },
  });
}

/**
 * Admission: authenticates the caller and counts the request against its tenant's rate limit.
 * With `whenDone` (HTTP requests; it registers a callback for the response's end) the request
 * also holds one of the tenant's in-flight slots until then. Throws GraphQLErrors (401, 429).
 */
export async function admit(
  services: Services,
  authorization: unknown,
  whenDone?: (release: () => void) => void,
): Promise<Tenant> {
  const tenant = await authenticate(services.tenants, authorization);
  const verdict = services.rateLimiter.consume(tenant.id);
  if (!verdict.ok)
    throw rateLimited(
      `rate limit of ${verdict.limit} requests per window reached; retry in ${verdict.retryAfterSeconds} s`,
      verdict.retryAfterSeconds,
    );
  if (whenDone) {
    const release = services.concurrency.enter(tenant.id);
    if (!release)
      throw rateLimited(
        `${services.concurrency.maxInFlight} requests of this tenant are already in flight; retry when one ends`,
        1,
      );
    whenDone(release);
  }
  return tenant;
}

/** What the resolvers of one request (or one subscription) get. */
export function contextFor(services: Services, tenant: Tenant): Context {
  return { ...services, tenant, loaders: loadersFor(services, tenant.id) };
}

/** Admission and context in one (subscriptions: admitted once per operation). */
export async function buildContext(services: Services, authorization: unknown): Promise<Context> {
  return contextFor(services, await admit(services, authorization));
}
