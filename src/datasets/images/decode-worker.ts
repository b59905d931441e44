/**
 * A decoding thread's task (see decode-pool.ts): a batch of image files in one buffer, processed
 * in order; the decoded pixels come back in one buffer. The first failure ends the batch: ingest
 * stops at the first bad file in archive order anyway.
 */

import { IngestError } from "../ingest-error.ts";
import { type ImageSteps, processImage } from "./pipeline.ts";

export interface DecodeBatch {
  /** the files, back to back; file i ends at `ends[i]` */
  bytes: Uint8Array;
  ends: number[];
  steps: ImageSteps[];
}

export interface DecodedShape {
  width: number;
  height: number;
  channels: 1 | 3;
}

export interface BatchFailure {
  index: number;
  message: string;
  /** set for a user's bad file (IngestError); absent for a fault of ours */
  code?: string;
  field?: string;
}

export interface DecodedBatch {
  /** pixels of images 0..shapes.length-1, back to back */
  pixels: Uint8Array;
  shapes: DecodedShape[];
  failure?: BatchFailure;
}

export default async function decodeBatch(batch: DecodeBatch): Promise<DecodedBatch> {
  const outputs: Buffer[] = [];
  const shapes: DecodedShape[] = [];
  let failure: BatchFailure | undefined;
  let start = 0;
  for (let i = 0; i < batch.steps.length; i++) {
    const end = batch.ends[i] as number;
    const file = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset + start, end - start);
    start = end;
    try {
      const image = await processImage(file, batch.steps[i] as ImageSteps);
      outputs.push(image.data);
      shapes.push({ width: image.width, height: image.height, channels: image.channels });
    } catch (e) {
      const error = e as Error;
      failure =
        error instanceof IngestError
          ? { index: i, message: error.message, code: error.code, field: error.field }
          : { index: i, message: error.message ?? String(e) };
      break;
    }
  }
  return { pixels: Buffer.concat(outputs), shapes, failure };
}
