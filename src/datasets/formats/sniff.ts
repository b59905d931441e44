/**
 * Recognising a file by its first bytes, for messages that say what an upload is when it is not
 * what its format expects (an NPY given as IDX, a gzip, a pickle, ...).
 */

/** "\x93NUMPY": how every NPY file starts. */
export const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);

/** A hint naming what a file looks like when it is not what was expected, or null. */
export function sniff(bytes: Uint8Array): string | null {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (b.length >= 6 && b.subarray(0, 6).equals(NPY_MAGIC)) return "it is an NPY file (use format NPY_PAIR)";
  if (
    b.length >= 4 &&
    b[0] === 0x50 &&
    b[1] === 0x4b &&
    (b[2] === 3 || b[2] === 5) &&
    (b[3] === 4 || b[3] === 6)
  ) {
    return "it is a zip archive (an .npz? use format NPZ)";
  }
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return "it is gzip-compressed";
  if (b.length >= 2 && b[0] === 0x80 && (b[1] ?? 0) <= 5) return "it is a Python pickle";
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && [8, 9, 11, 12, 13, 14].includes(b[2] ?? 0)) {
    return "it looks like an IDX file (use format IDX)";
  }
  return null;
}
