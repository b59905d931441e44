/** Object-store key layout: everything a tenant owns lives under its own prefix. */
export const keys = {
  datasetRaw: (tenantId: string, datasetId: string, part: string) =>
    `tenants/${tenantId}/datasets/${datasetId}/raw/${part}`,
  datasetCanonical: (tenantId: string, datasetId: string, file: string) =>
    `tenants/${tenantId}/datasets/${datasetId}/canonical/${file}`,
  datasetExport: (tenantId: string, datasetId: string, file: string) =>
    `tenants/${tenantId}/datasets/${datasetId}/exports/${file}`,
  datasetPrefix: (tenantId: string, datasetId: string) => `tenants/${tenantId}/datasets/${datasetId}/`,
  jobPrefix: (tenantId: string, jobId: string) => `tenants/${tenantId}/jobs/${jobId}/`,
  checkpoint: (tenantId: string, jobId: string) => `tenants/${tenantId}/jobs/${jobId}/checkpoint.pt`,
  artifact: (tenantId: string, jobId: string, file: string) =>
    `tenants/${tenantId}/jobs/${jobId}/artifacts/${file}`,
  model: (tenantId: string, modelId: string) => `tenants/${tenantId}/models/${modelId}/model.safetensors`,
  modelPrefix: (tenantId: string, modelId: string) => `tenants/${tenantId}/models/${modelId}/`,
  studyReport: (tenantId: string, studyId: string) => `tenants/${tenantId}/studies/${studyId}/report.tar`,
  healthThumbnail: (tenantId: string, jobId: string, sampleIndex: number) =>
    `tenants/${tenantId}/jobs/${jobId}/health/thumbnails/${sampleIndex}.png`,
};

/** The tenant and dataset of a raw upload's key, or null for any other key. */
export function rawUploadOwner(key: string): { tenantId: string; datasetId: string } | null {
  const match = /^tenants\/([^/]+)\/datasets\/([^/]+)\/raw\/[^/]+$/.exec(key);
  return match ? { tenantId: match[1] as string, datasetId: match[2] as string } : null;
}

export const CANONICAL_FILES = ["images.npy", "labels.npy", "manifest.json"] as const;
export const OPTIONAL_CANONICAL_FILES = ["poison_mask.npy"] as const;
