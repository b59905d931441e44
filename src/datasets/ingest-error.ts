/**
 * A dataset problem a user can fix (wrong file, wrong dtype, bad labels, ...). `code` is stable
 * and machine-readable; `message` says what was found and what to do about it.
 *
 * Codes: MISSING_PART, UNKNOWN_PART, UNKNOWN_FORMAT, BAD_HEADER, PICKLE_NOT_ALLOWED,
 * UNSUPPORTED_DTYPE, UNSUPPORTED_LAYOUT, BAD_SHAPE, EMPTY, TRUNCATED, TRAILING_DATA,
 * COUNT_MISMATCH, PIXEL_OUT_OF_RANGE, LABEL_OUT_OF_RANGE, BAD_NUM_CLASSES, BAD_CLASS_NAMES,
 * TOO_MANY_CLASSES, TOO_LARGE, BAD_ARCHIVE, CORRUPT, UNSAFE_PATH, BAD_MANIFEST.
 * Archive formats add: UNSAFE_ENTRY (links, devices), BAD_LAYOUT, EMPTY_CLASS, MISSING_FILE,
 * BAD_CSV, UNSUPPORTED_IMAGE, UNDECODABLE_IMAGE, MIXED_SIZES, MIXED_CHANNELS, BAD_OPTION.
 *
 * `field` names the ingest option at fault (BAD_OPTION only), e.g. "resize.width".
 */
export class IngestError extends Error {
  readonly code: string;
  readonly field: string | undefined;
  constructor(code: string, message: string, field?: string) {
    super(message);
    this.name = "IngestError";
    this.code = code;
    this.field = field;
  }
}
