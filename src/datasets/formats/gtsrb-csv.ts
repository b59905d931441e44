/**
 * GTSRB's ground-truth CSVs (GT-00000.csv per training class, GT-final_test.csv for the test
 * set): semicolon-separated, a header row naming the columns
 * Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId (any order; other columns ignored),
 * then one row per image. The region of interest is inclusive: pixels X1..X2 × Y1..Y2.
 */

import { IngestError } from "../ingest-error.ts";

export interface GtsrbRow {
  width: number;
  height: number;
  /** inclusive ROI corners */
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  classId: number;
}

const COLUMNS = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"] as const;
const NUMBERS = COLUMNS.slice(1);

/** Parses a GT CSV into filename → row; BAD_CSV (with the line) for anything malformed. */
export function parseGtsrbCsv(bytes: Buffer, what: string): Map<string, GtsrbRow> {
  const text = bytes.toString("utf8").replace(/^\uFEFF/, "");
  const lines = text.split(/\r?\n/);
  const bad = (line: number, why: string) => new IngestError("BAD_CSV", `${what} line ${line}: ${why}`);
  const header = (lines[0] ?? "").split(";").map((cell) => cell.trim());
  const at = new Map(header.map((name, i) => [name, i]));
  const missing = COLUMNS.filter((name) => !at.has(name));
  if (missing.length > 0) {
    throw bad(1, `the header lacks ${missing.join(", ")} (expected ${COLUMNS.join(";")})`);
  }
  const rows = new Map<string, GtsrbRow>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === "") continue;
    const cells = line.split(";").map((cell) => cell.trim());
    if (cells.length !== header.length) {
      throw bad(i + 1, `${cells.length} fields where the header has ${header.length}`);
    }
    const file = cells[at.get("Filename") as number] as string;
    if (file === "") throw bad(i + 1, "the Filename is empty");
    const values: number[] = [];
    for (const name of NUMBERS) {
      const cell = cells[at.get(name) as number] as string;
      if (!/^\d{1,9}$/.test(cell))
        throw bad(i + 1, `${name} is ${JSON.stringify(cell)}, not a non-negative integer`);
      values.push(Number(cell));
    }
    const [width, height, x1, y1, x2, y2, classId] = values as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    if (width < 1 || height < 1) throw bad(i + 1, `the image size is ${width}x${height}`);
    if (x1 > x2 || y1 > y2 || x2 >= width || y2 >= height) {
      throw bad(
        i + 1,
        `the ROI (${x1},${y1})-(${x2},${y2}) does not lie inside the ${width}x${height} image`,
      );
    }
    if (rows.has(file)) throw bad(i + 1, `${file} has a second row`);
    rows.set(file, { width, height, x1, y1, x2, y2, classId });
  }
  return rows;
}
