import { GraphQLError } from "graphql";
import type { DatasetService } from "../datasets/service.ts";
import type { JobService, JobUpdateSource } from "../jobs/service.ts";
import type { QuotaService } from "../tenants/quota.ts";
import type { Tenant, TenantService } from "../tenants/service.ts";

/** What the API serves from: services only (resolvers never reach the database or the store). */
export interface Services {
  tenants: TenantService;
  datasets: DatasetService;
  jobs: JobService;
  quotas: QuotaService;
  /** This process's LISTEN connection for job updates (subscriptions wait on it). */
  jobUpdates: JobUpdateSource;
  /** The readiness of what the API needs (database, object store): "ok" or why not, by name. */
  ready(): Promise<Record<string, string>>;
}

/** What every resolver gets: the caller's tenant (every query is scoped by it) and the services. */
export interface Context extends Services {
  tenant: Tenant;
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

export async function buildContext(services: Services, authorization: string | undefined): Promise<Context> {
  return { ...services, tenant: await authenticate(services.tenants, authorization) };
}
