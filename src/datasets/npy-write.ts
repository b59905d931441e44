/**
 * Writing NPY files: the header numpy writes, for the canonical writer (and for tests and
 * benchmarks that build uploads). Reading uploaded NPY files is formats/npy-header.ts.
 */

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"

/**
 * An NPY v1.0 header (magic, version, length, dict literal) for a C-ordered array, padded with
 * spaces and a final newline to a multiple of 64 bytes exactly as numpy writes it, so
 * `np.load` (and mmap) accept it. The data follows immediately.
 */
export function npyHeader(descr: string, shape: readonly number[]): Buffer {
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) throw new RangeError(`invalid NPY dimension ${dim}`);
  }
  if (!/^[<>|][a-zA-Z]\d*$/.test(descr)) throw new RangeError(`invalid NPY descr ${JSON.stringify(descr)}`);
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${dims}, }`;
  const preamble = NPY_MAGIC.length + 2 + 2;
  const unpadded = preamble + dict.length + 1; // + "\n"
  const total = Math.ceil(unpadded / 64) * 64;
  const headerLength = total - preamble;
  if (headerLength > 0xffff) throw new RangeError("NPY v1.0 header longer than 65535 bytes");
  const out = Buffer.alloc(total, 0x20);
  NPY_MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(headerLength, 8);
  out.write(dict, preamble, "latin1");
  out[total - 1] = 0x0a;
  return out;
}
