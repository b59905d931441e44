import { GraphQLError } from "graphql";
import type { DataSource } from "typeorm";
import type { DatasetService } from "../datasets/service.ts";
import type { ChannelListener } from "../db/listener.ts";
import { type Tenant, tenantForKey } from "../db/tenants.ts";
import type { JobService } from "../jobs/service.ts";
import type { ObjectStore } from "../storage/object-store.ts";

export interface Services {
  db: DataSource;
  store: ObjectStore;
  datasets: DatasetService;
  jobs: JobService;
  /** This process's LISTEN connection for job updates (subscriptions wait on it). */
  jobUpdates: ChannelListener;
  python?: string;
}

/** What every resolver gets: the caller's tenant (every query is scoped by it) and the services. */
export interface Context extends Services {
  tenant: Tenant;
}

const unauthenticated = (message: string) =>
  new GraphQLError(message, { extensions: { code: "UNAUTHENTICATED", http: { status: 401 } } });

/** `Bearer <key>` (an HTTP header, or graphql-ws connectionParams) → the key's tenant. */
export async function authenticate(db: DataSource, authorization: unknown): Promise<Tenant> {
  const match = /^Bearer\s+(\S+)$/i.exec(typeof authorization === "string" ? authorization : "");
  if (!match?.[1]) throw unauthenticated("send an API key as `Authorization: Bearer <key>`");
  const tenant = await tenantForKey(db, match[1]);
  if (!tenant) throw unauthenticated("this API key is unknown or revoked");
  return tenant;
}

export async function buildContext(services: Services, authorization: string | undefined): Promise<Context> {
  return { ...services, tenant: await authenticate(services.db, authorization) };
}
