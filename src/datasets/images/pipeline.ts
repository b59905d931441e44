/**
 * Everything done to one image file on its way into a dataset, as one plain-data task: decode,
 * an optional check of the decoded size, crop, resize, channel conversion. Plain data so the
 * task can run in a decoding thread (decode-pool.ts) as well as here.
 */

import { IngestError } from "../ingest-error.ts";
import type { ImageSize } from "../options.ts";
import { type Crop, decodeImage, toChannels, transformImage } from "./decode.ts";
import type { RawImage } from "./ppm.ts";

export interface ImageSteps {
  /** names the file in messages, e.g. "cat/0001.png" */
  source: string;
  /** The decoded image must be this size, else `error` (e.g. GTSRB's CSV row against the file). */
  expectSize?: { width: number; height: number; code: string; because: string };
  crop?: Crop;
  resize?: ImageSize;
  channels?: 1 | 3;
}

export async function processImage(bytes: Buffer, steps: ImageSteps): Promise<RawImage> {
  const { source, expectSize } = steps;
  let image = await decodeImage(bytes, source);
  if (expectSize && (image.width !== expectSize.width || image.height !== expectSize.height)) {
    throw new IngestError(
      expectSize.code,
      `${source} is ${image.width}x${image.height} but ${expectSize.because}`,
    );
  }
  if (steps.crop || steps.resize)
    image = transformImage(image, { crop: steps.crop, resize: steps.resize }, source);
  if (steps.channels) image = toChannels(image, steps.channels);
  return image;
}
