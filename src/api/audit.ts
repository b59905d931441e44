import type { Context } from "./context.ts";

type Target = (args: Record<string, unknown>, result: unknown) => unknown;

const arg: Target = (args) => args.id;
const resultId: Target = (_args, result) => (result as { id?: string } | null)?.id;
const resultDataset: Target = (_args, result) =>
  (result as { dataset?: { id?: string } } | null)?.dataset?.id;

/** Which mutations the audit log records, and what each acts on. */
export const AUDITED: Readonly<Record<string, { type: string; id: Target }>> = {
  createDatasetUpload: { type: "dataset", id: resultDataset },
  completeDatasetUpload: { type: "dataset", id: arg },
  deleteDataset: { type: "dataset", id: arg },
  poisonDataset: { type: "dataset", id: resultDataset },
  sanitizeDataset: { type: "dataset", id: resultId },
  launchTraining: { type: "job", id: resultId },
  scanDataset: { type: "job", id: resultId },
  cancelJob: { type: "job", id: arg },
  launchStudy: { type: "study", id: resultId },
  cancelStudy: { type: "study", id: arg },
  retryJob: { type: "job", id: arg },
  deleteJob: { type: "job", id: arg },
  createWebhook: { type: "webhook", id: (_a, r) => (r as { webhook?: { id?: string } } | null)?.webhook?.id },
  rotateWebhookSecret: { type: "webhook", id: arg },
  deleteWebhook: { type: "webhook", id: arg },
  createModelUpload: { type: "model", id: (_a, r) => (r as { model?: { id?: string } } | null)?.model?.id },
  completeModelUpload: { type: "model", id: arg },
  deleteModel: { type: "model", id: arg },
  evaluateModel: { type: "job", id: resultId },
  createApiKey: { type: "apiKey", id: resultId },
  revokeApiKey: { type: "apiKey", id: arg },
};

/** Records a mutation that succeeded (a failed one changed nothing worth recording). */
export async function recordMutation(
  ctx: Context,
  action: string,
  args: Record<string, unknown>,
  result: unknown,
) {
  const audited = AUDITED[action];
  if (!audited) return;
  const id = audited.id(args, result);
  await ctx.audit.record({
    tenantId: ctx.tenant.id,
    actor: ctx.tenant.keyId ?? "unknown",
    action,
    targetType: audited.type,
    targetId: typeof id === "string" ? id : null,
  });
}
