/**
 * A minimal ustar writer for the report bundles the service builds itself (small files, known
 * up front): reproducible members (mode 0644, owner 0, time 0), names under 100 bytes.
 */

const BLOCK = 512;

function header(name: string, size: number): Buffer {
  const out = Buffer.alloc(BLOCK);
  const bytes = Buffer.from(name, "utf8");
  if (bytes.length >= 100) throw new Error(`tar member name too long: ${name}`);
  bytes.copy(out, 0);
  const octal = (value: number, width: number) => value.toString(8).padStart(width - 1, "0");
  out.write(octal(0o644, 8), 100, "ascii");
  out.write(octal(0, 8), 108, "ascii");
  out.write(octal(0, 8), 116, "ascii");
  out.write(octal(size, 12), 124, "ascii");
  out.write(octal(0, 12), 136, "ascii");
  out.write("        ", 148, "ascii"); // checksum counted as spaces
  out.write("0", 156, "ascii");
  out.write("ustar\u000000", 257, "binary");
  let sum = 0;
  for (const byte of out) sum += byte;
  out.write(`${octal(sum, 7)}\u0000`, 148, "binary");
  return out;
}

export function tarOf(files: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    parts.push(header(file.name, file.data.length), file.data);
    const pad = (BLOCK - (file.data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
