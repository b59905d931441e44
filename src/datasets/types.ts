/**
 * Dataset types shared by every layer of ingest (formats, archives, the canonical writer), kept
 * here, below all of them, so that none of them imports another for its types.
 */

/** Upload formats the service understands (the readers are registered in formats/index.ts). */
export type DatasetFormat = "NPY_PAIR" | "NPZ" | "IDX" | "CIFAR10_BINARY" | "CLASS_FOLDERS" | "GTSRB";

export interface FormatLimits {
  /** Cap on the uncompressed bytes of the arrays read (TOO_LARGE above it). */
  maxBytes: number;
  /** Cap on uncompressed/compressed size for compressed archive members (zip bombs). */
  maxCompressionRatio: number;
  /** Cap on the canonical dataset's decoded bytes, count × H × W × C (TOO_LARGE above it). */
  maxDecodedBytes?: number;
  /** What the tenant may still store (QUOTA_EXCEEDED above it). */
  quotaBytesLeft?: number;
}
