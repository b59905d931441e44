import { GraphQLError } from "graphql";
import type { DataSource } from "typeorm";
import type { DatasetService } from "../datasets/service.ts";
import { type Tenant, tenantForKey } from "../db/tenants.ts";
import type { JobService } from "../jobs/service.ts";
import type { ObjectStore } from "../storage/object-store.ts";

export interface Services {
  db: DataSource;
  store: ObjectStore;
  datasets: DatasetService;
  jobs: JobService;
  python?: string;
}

/** What every resolver gets: the caller's tenant (every query is scoped by it) and the services. */
export interface Context extends Services {
  tenant: Tenant;
}

export async function buildContext(services: Services, authorization: string | undefined): Promise<Context> {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
  if (!match?.[1]) {
    throw new GraphQLError("send an API key as `Authorization: Bearer <key>`", {
      extensions: { code: "UNAUTHENTICATED", http: { status: 401 } },
    });
  }
  const tenant = await tenantForKey(services.db, match[1]);
  if (!tenant)
    throw new GraphQLError("this API key is unknown or revoked", {
      extensions: { code: "UNAUTHENTICATED", http: { status: 401 } },
    });
  return { ...services, tenant };
}
