/* Generated from schema/schema.graphql by GraphQL Code Generator (make codegen); do not edit. */
export type Maybe<T> = T | null;
export type InputMaybe<T> = T | null | undefined;
export type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
export type MakeOptional<T, K extends keyof T> = Omit<T, K> & { [SubKey in K]?: Maybe<T[SubKey]> };
export type MakeMaybe<T, K extends keyof T> = Omit<T, K> & { [SubKey in K]: Maybe<T[SubKey]> };
export type MakeEmpty<T extends { [key: string]: unknown }, K extends keyof T> = { [_ in K]?: never };
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
/** All built-in and custom scalars, mapped to their actual values */
export type Scalars = {
  ID: { input: string; output: string; }
  String: { input: string; output: string; }
  Boolean: { input: boolean; output: boolean; }
  Int: { input: number; output: number; }
  Float: { input: number; output: number; }
  DateTime: { input: string; output: string; }
  JSON: { input: unknown; output: unknown; }
};

/** Where a job runs. */
export type Accelerator =
  | 'CPU'
  | 'GPU';

export type ApiKey = {
  __typename?: 'ApiKey';
  createdAt: Scalars['DateTime']['output'];
  expiresAt?: Maybe<Scalars['DateTime']['output']>;
  id: Scalars['ID']['output'];
  /** When the key last authenticated a request (written every few seconds, not per request). */
  lastUsedAt?: Maybe<Scalars['DateTime']['output']>;
  name: Scalars['String']['output'];
  /** The key's first characters, to tell keys apart (the key itself is never stored). */
  prefix: Scalars['String']['output'];
  revokedAt?: Maybe<Scalars['DateTime']['output']>;
};

export type Artifact = {
  __typename?: 'Artifact';
  downloadUrl: Scalars['String']['output'];
  format: Scalars['String']['output'];
  kind: Scalars['String']['output'];
  sha256: Scalars['String']['output'];
  sizeBytes: Scalars['Float']['output'];
};


export type ArtifactDownloadUrlArgs = {
  expiresInSeconds?: InputMaybe<Scalars['Int']['input']>;
};

export type Attack = {
  __typename?: 'Attack';
  cleanLabel: Scalars['Boolean']['output'];
  description: Scalars['String']['output'];
  name: Scalars['String']['output'];
  params: Scalars['JSON']['output'];
};

export type AttackInput = {
  name: Scalars['String']['input'];
  params?: InputMaybe<Scalars['JSON']['input']>;
  /**
   * Share of the training set to poison: floor(ratio x count) images, at least one. A clean-label
   * attack (SIG, LCBA) poisons target-class images only, a dirty-label one the others; a ratio asking
   * for more than that is refused (BAD_USER_INPUT, field attack.ratio, naming the largest that fits),
   * never capped.
   */
  ratio?: InputMaybe<Scalars['Float']['input']>;
  seed?: InputMaybe<Scalars['Int']['input']>;
  target: Scalars['Int']['input'];
};

export type AuditEvent = {
  __typename?: 'AuditEvent';
  /** The mutation, e.g. launchTraining, deleteDataset, revokeApiKey. */
  action: Scalars['String']['output'];
  /** The id of the API key that made the call. */
  actor: Scalars['String']['output'];
  at: Scalars['DateTime']['output'];
  id: Scalars['ID']['output'];
  targetId?: Maybe<Scalars['ID']['output']>;
  /** dataset, job or apiKey. */
  targetType?: Maybe<Scalars['String']['output']>;
};

export type AuditEventConnection = {
  __typename?: 'AuditEventConnection';
  edges: Array<AuditEventEdge>;
  pageInfo: PageInfo;
};

export type AuditEventEdge = {
  __typename?: 'AuditEventEdge';
  cursor: Scalars['String']['output'];
  node: AuditEvent;
};

export type CalibrationGroup = {
  __typename?: 'CalibrationGroup';
  /** What the runs were, e.g. held-out attacks or clean data on other seeds. */
  name: Scalars['String']['output'];
  rates: CalibrationRates;
};

/** A share of runs: count of of (rate null when of is 0). */
export type CalibrationRate = {
  __typename?: 'CalibrationRate';
  count: Scalars['Int']['output'];
  of: Scalars['Int']['output'];
  rate?: Maybe<Scalars['Float']['output']>;
};

/** The verdict's error rates over a set of runs. A miss is a poisoned set not called POISONED (INCONCLUSIVE included). */
export type CalibrationRates = {
  __typename?: 'CalibrationRates';
  /** Runs measured. */
  cells: Scalars['Int']['output'];
  /** Clean sets called CLEAN. */
  cleanCalledClean: CalibrationRate;
  /** Poisoned sets not called POISONED. */
  falseNegativeRate: CalibrationRate;
  /** Clean sets called POISONED. */
  falsePositiveRate: CalibrationRate;
  /** Sets called POISONED whose likelyTarget was the attack's target. */
  likelyTargetAccuracy: CalibrationRate;
  /** Poisoned sets called CLEAN. */
  poisonedCalledClean: CalibrationRate;
};

export type CreateDatasetUploadInput = {
  /** Class names, in label order (optional; for archive formats they replace the archive's own, one for one). */
  classNames?: InputMaybe<Array<Scalars['String']['input']>>;
  format: DatasetFormat;
  name: Scalars['String']['input'];
  /** Archive formats only: how to decode the archive. */
  options?: InputMaybe<IngestOptionsInput>;
  /** Two-file formats (NPY_PAIR, IDX): one entry per part. */
  parts?: InputMaybe<Array<UploadPartInput>>;
  role: DatasetRole;
  sha256?: InputMaybe<Scalars['String']['input']>;
  /** Single-file formats (NPZ, CIFAR10_BINARY, CLASS_FOLDERS, GTSRB): the file's size and sha256. */
  sizeBytes?: InputMaybe<Scalars['Float']['input']>;
};

export type CreateModelUploadInput = {
  /** A catalog architecture (methods and the README list them). */
  architecture: Scalars['String']['input'];
  classNames?: InputMaybe<Array<Scalars['String']['input']>>;
  /** The floating-point tensors' dtype in the file. */
  dtype: ModelDtype;
  inputShape: ModelInputShapeInput;
  name: Scalars['String']['input'];
  numClasses: Scalars['Int']['input'];
  preprocessing?: InputMaybe<PreprocessingInput>;
  sha256: Scalars['String']['input'];
  sizeBytes: Scalars['Float']['input'];
  /** WRN only: the block the stem ends with (4, 5 or 6; default 5), which decides the tensor names. */
  stemEndBlock?: InputMaybe<Scalars['Int']['input']>;
};

export type CreateWebhookInput = {
  events: Array<WebhookEvent>;
  url: Scalars['String']['input'];
};

export type CreatedApiKey = {
  __typename?: 'CreatedApiKey';
  expiresAt?: Maybe<Scalars['DateTime']['output']>;
  id: Scalars['ID']['output'];
  /** Shown once; only its hash is stored. */
  key: Scalars['String']['output'];
  name: Scalars['String']['output'];
};

export type CreatedWebhook = {
  __typename?: 'CreatedWebhook';
  /** whsec_...: keep it; it is not shown again. */
  secret: Scalars['String']['output'];
  webhook: Webhook;
};

export type Dataset = {
  __typename?: 'Dataset';
  channels?: Maybe<Scalars['Int']['output']>;
  classHistogram?: Maybe<Array<Scalars['Int']['output']>>;
  classNames?: Maybe<Array<Scalars['String']['output']>>;
  count?: Maybe<Scalars['Int']['output']>;
  createdAt: Scalars['DateTime']['output'];
  /** Set on datasets made by sanitizeDataset. */
  derivedFrom?: Maybe<DatasetLineage>;
  /** A signed, expiring URL of the dataset's arrays (READY datasets; FAILED_PRECONDITION otherwise). */
  downloadUrl: Scalars['String']['output'];
  /** Machine-readable reason when status is FAILED (e.g. UNSAFE_PATH, TRUNCATED, MIXED_SIZES). */
  failureCode?: Maybe<Scalars['String']['output']>;
  failureReason?: Maybe<Scalars['String']['output']>;
  format: DatasetFormat;
  height?: Maybe<Scalars['Int']['output']>;
  id: Scalars['ID']['output'];
  name: Scalars['String']['output'];
  numClasses?: Maybe<Scalars['Int']['output']>;
  /** Set on datasets this service poisoned: attack, target, ratio, seed, poisoned count. */
  poison?: Maybe<Scalars['JSON']['output']>;
  role: DatasetRole;
  sha256?: Maybe<Scalars['String']['output']>;
  sizeBytes: Scalars['Float']['output'];
  status: DatasetStatus;
  width?: Maybe<Scalars['Int']['output']>;
};


export type DatasetDownloadUrlArgs = {
  expiresInSeconds?: InputMaybe<Scalars['Int']['input']>;
  format: DatasetDownloadFormat;
  part?: InputMaybe<Scalars['String']['input']>;
};

export type DatasetConnection = {
  __typename?: 'DatasetConnection';
  edges: Array<DatasetEdge>;
  pageInfo: PageInfo;
};

export type DatasetDownloadFormat =
  /** The two .npy files themselves: name the part, images or labels. */
  | 'NPY_PAIR'
  /** One .npz holding images.npy, labels.npy (and poison_mask.npy for sets poisonDataset made). */
  | 'NPZ';

export type DatasetEdge = {
  __typename?: 'DatasetEdge';
  cursor: Scalars['String']['output'];
  node: Dataset;
};

export type DatasetFormat =
  /** Made by this service (poisonDataset, sanitizeDataset), never uploaded: the canonical layout the trainer reads. */
  | 'CANONICAL'
  /**
   * The CIFAR-10 binary archive (cifar-10-binary.tar.gz, also as .tar or .zip): part archive.
   * options.split is required: TRAIN (data_batch_1..5, in that order) or TEST (test_batch).
   * Class names from batches.meta.txt.
   */
  | 'CIFAR10_BINARY'
  /**
   * A zip, tar or tar.gz of PNG, JPEG or PPM images in one folder per class, <class>/<file> or
   * <root>/<class>/<file>: part archive. Classes are the folder names sorted by code point
   * (label = index); images in archive order. options.resize resizes every image to exactly that
   * size with a bilinear kernel (anti-aliased when shrinking; aspect ratio not kept); without it
   * every image must have one size. options.channels converts every image to 1 or 3 channels;
   * without it the first image decides and a different one is refused.
   */
  | 'CLASS_FOLDERS'
  /**
   * GTSRB as distributed, in a zip, tar or tar.gz: part archive. TRAIN layout
   * Final_Training/Images/<5-digit class>/*.ppm with GT-<class>.csv; TEST layout
   * Final_Test/Images/*.ppm with GT-final_test.csv (the labelled one) anywhere in the archive.
   * 43 classes. options: split (default: the layout present), cropToRoi (default false),
   * resize (default 32x32, bilinear), channels (default 3).
   */
  | 'GTSRB'
  /** Two IDX files (MNIST layout), gzipped or raw: parts images and labels. */
  | 'IDX'
  /** Two .npy files: parts images and labels. */
  | 'NPY_PAIR'
  /** One .npz archive holding images and labels arrays (no pickles). */
  | 'NPZ';

/** Where a sanitized dataset came from. */
export type DatasetLineage = {
  __typename?: 'DatasetLineage';
  /** The training set it was derived from (null once deleted). */
  dataset?: Maybe<Dataset>;
  /** The job whose health report chose the samples (null once deleted). */
  job?: Maybe<TrainingJob>;
  /** The rule applied, as given. */
  policy: Scalars['JSON']['output'];
  /** Samples removed (null until the dataset is READY). */
  removedCount?: Maybe<Scalars['Int']['output']>;
  /** Of those, samples this service had poisoned (only for sets made by poisonDataset, whose ground truth it keeps). */
  removedPoisonedCount?: Maybe<Scalars['Int']['output']>;
};

export type DatasetRole =
  | 'ASR_TEST'
  | 'HOLDOUT'
  | 'TEST'
  | 'TRAIN';

/** A benchmark archive's split. */
export type DatasetSplit =
  | 'TEST'
  | 'TRAIN';

export type DatasetStatus =
  | 'AWAITING_UPLOAD'
  | 'FAILED'
  | 'READY'
  | 'VALIDATING';

export type DatasetUpload = {
  __typename?: 'DatasetUpload';
  dataset: Dataset;
  /** The first part's URL (convenience for single-file formats). */
  uploadUrl: Scalars['String']['output'];
  /** Upload each part with its method and headers, then call completeDatasetUpload. */
  uploads: Array<UploadTarget>;
};

export type DeliveryStatus =
  | 'DELIVERED'
  /** Every attempt failed. */
  | 'FAILED'
  /** Not delivered yet: waiting for its first attempt or a retry (exponential backoff). */
  | 'PENDING';

export type EvaluateModelInput = {
  asrTestDatasetId?: InputMaybe<Scalars['ID']['input']>;
  externalId?: InputMaybe<Scalars['String']['input']>;
  idempotencyKey: Scalars['String']['input'];
  initJobId?: InputMaybe<Scalars['ID']['input']>;
  labels?: InputMaybe<Scalars['JSON']['input']>;
  modelId?: InputMaybe<Scalars['ID']['input']>;
  resources?: InputMaybe<ResourcesInput>;
  target?: InputMaybe<Scalars['Int']['input']>;
  testDatasetId: Scalars['ID']['input'];
};

/** Is the training set poisoned, towards which class, and which samples. */
export type Health = {
  __typename?: 'Health';
  /** How far the verdict can be trusted: its thresholds' error rates on runs they were not fitted on. Null for reports the measurement does not cover (scans, T&R without isolation). */
  calibration?: Maybe<HealthCalibration>;
  /** Per-class evidence and the thresholds the verdict applied (overPrediction, flaggedShare, labelExcess, agreement, ...). */
  evidence: Scalars['JSON']['output'];
  /** The class the poisoned samples were relabelled to; set when the verdict is POISONED. */
  likelyTarget?: Maybe<Scalars['Int']['output']>;
  /** Training samples scored (all of them: the health artifact health_scores.npy holds every score, in dataset order). */
  sampleCount: Scalars['Int']['output'];
  /** Training samples ranked most suspicious first (the top 10,000; the artifact holds the rest). */
  suspicious: SuspiciousSampleConnection;
  verdict: HealthVerdict;
};


/** Is the training set poisoned, towards which class, and which samples. */
export type HealthSuspiciousArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};

/** The health verdict's calibration, measured out of sample by the efficacy study (bench/efficacy/calibrate.py). */
export type HealthCalibration = {
  __typename?: 'HealthCalibration';
  /** Which reports it covers. */
  appliesTo: Scalars['String']['output'];
  /** The data and model it was measured on. */
  dataset: Scalars['String']['output'];
  /** Wrong verdicts on those runs. */
  fitErrors: Scalars['Int']['output'];
  /** The runs the thresholds were chosen on; they are not in the rates. */
  fitOn: Array<Scalars['String']['output']>;
  groups: Array<CalibrationGroup>;
  /** Every run the thresholds were not chosen on. */
  outOfSample: CalibrationRates;
  /** The same without poison under 5 % of the training set, which the verdict is not built to see. */
  outOfSampleAtLeast5Percent: CalibrationRates;
  /** Where the tables and per-run evidence are. */
  source: Scalars['String']['output'];
  /** The thresholds measured (the verdict's own, as in evidence.thresholds). */
  thresholds: Scalars['JSON']['output'];
};

export type HealthVerdict =
  /** No sign of poisoning. */
  | 'CLEAN'
  /** Signs that are not conclusive either way (e.g. a hard-to-separate class on clean data). */
  | 'INCONCLUSIVE'
  /** Poisoned, most likely towards likelyTarget. */
  | 'POISONED';

export type HyperParameter = {
  __typename?: 'HyperParameter';
  choices?: Maybe<Array<Scalars['JSON']['output']>>;
  default?: Maybe<Scalars['JSON']['output']>;
  doc: Scalars['String']['output'];
  maximum?: Maybe<Scalars['Float']['output']>;
  minimum?: Maybe<Scalars['Float']['output']>;
  name: Scalars['String']['output'];
  nullable: Scalars['Boolean']['output'];
  type: Scalars['String']['output'];
};

export type ImageSizeInput = {
  height: Scalars['Int']['input'];
  width: Scalars['Int']['input'];
};

/**
 * How an archive format is decoded. Each format takes only the options its description names;
 * any other is refused with BAD_USER_INPUT (field options.<name>).
 */
export type IngestOptionsInput = {
  /** CLASS_FOLDERS, GTSRB: 1 (grey, ITU-R BT.601 luma) or 3 (RGB); every image is converted. */
  channels?: InputMaybe<Scalars['Int']['input']>;
  /** GTSRB: crop each image to its CSV region of interest (Roi.X1..X2, Roi.Y1..Y2, inclusive) before resizing. Default false. */
  cropToRoi?: InputMaybe<Scalars['Boolean']['input']>;
  /** CLASS_FOLDERS, GTSRB: resize every image to exactly this size (bilinear, anti-aliased when shrinking; sides 1..4096). */
  resize?: InputMaybe<ImageSizeInput>;
  /** CIFAR10_BINARY (required), GTSRB: which split of the archive to ingest. */
  split?: InputMaybe<DatasetSplit>;
};

export type JobAttackInput = {
  name: Scalars['String']['input'];
  params?: InputMaybe<Scalars['JSON']['input']>;
  target: Scalars['Int']['input'];
};

export type JobError = {
  __typename?: 'JobError';
  code: Scalars['String']['output'];
  message: Scalars['String']['output'];
};

/** Jobs whose labels include every given one, and/or whose externalId is the given one. */
export type JobFilter = {
  externalId?: InputMaybe<Scalars['String']['input']>;
  labels?: InputMaybe<Scalars['JSON']['input']>;
};

export type JobStatus =
  | 'CANCELLED'
  | 'CANCELLING'
  | 'FAILED'
  | 'QUEUED'
  | 'RUNNING'
  | 'STARTING'
  | 'SUCCEEDED'
  | 'UPLOADING'
  | 'VALIDATING';

export type LaunchStudyInput = {
  architecture?: InputMaybe<Scalars['String']['input']>;
  asrTestDatasetId?: InputMaybe<Scalars['ID']['input']>;
  externalId?: InputMaybe<Scalars['String']['input']>;
  holdoutDatasetId: Scalars['ID']['input'];
  idempotencyKey: Scalars['String']['input'];
  /** Labels of the study, also given to each of its jobs. */
  labels?: InputMaybe<Scalars['JSON']['input']>;
  /** Each method (with its hyper-parameters) runs once per seed. */
  methods: Array<StudyMethodInput>;
  resources?: InputMaybe<ResourcesInput>;
  seeds: Array<Scalars['Int']['input']>;
  target?: InputMaybe<Scalars['Int']['input']>;
  testDatasetId: Scalars['ID']['input'];
  trainDatasetId: Scalars['ID']['input'];
};

export type LaunchTrainingInput = {
  /** Default: the starting model's (modelId, initJobId), else wrn16-1. */
  architecture?: InputMaybe<Scalars['String']['input']>;
  asrTestDatasetId?: InputMaybe<Scalars['ID']['input']>;
  attack?: InputMaybe<JobAttackInput>;
  /** The platform's own id for this run (at most 256 characters), found again with jobs(filter: {externalId}). */
  externalId?: InputMaybe<Scalars['String']['input']>;
  holdoutDatasetId: Scalars['ID']['input'];
  hyperparameters?: InputMaybe<Scalars['JSON']['input']>;
  idempotencyKey: Scalars['String']['input'];
  /** Post-training defenses: start from the model an earlier SUCCEEDED job produced. */
  initJobId?: InputMaybe<Scalars['ID']['input']>;
  /** The platform's own labels, string to string (at most 32; keys of letters, digits, '.', '_', '/', '-'), found again with jobs(filter: {labels}). */
  labels?: InputMaybe<Scalars['JSON']['input']>;
  method: Scalars['String']['input'];
  /**
   * Post-training defenses (FINE_PRUNING, NAD, I_BAU, ANP): start from this READY uploaded model
   * instead of training a backdoored one first (pretrainEpochs is then unused).
   */
  modelId?: InputMaybe<Scalars['ID']['input']>;
  resources?: InputMaybe<ResourcesInput>;
  seed?: InputMaybe<Scalars['Int']['input']>;
  target?: InputMaybe<Scalars['Int']['input']>;
  testDatasetId: Scalars['ID']['input'];
  trainDatasetId: Scalars['ID']['input'];
};

export type Method = {
  __typename?: 'Method';
  description: Scalars['String']['output'];
  hyperparameters: Array<HyperParameter>;
  kind: Scalars['String']['output'];
  name: Scalars['String']['output'];
  requiredInputs: Array<Scalars['String']['output']>;
};

export type MetricPoint = {
  __typename?: 'MetricPoint';
  epoch?: Maybe<Scalars['Int']['output']>;
  name: Scalars['String']['output'];
  stage: Scalars['String']['output'];
  value?: Maybe<Scalars['Float']['output']>;
};

export type Metrics = {
  __typename?: 'Metrics';
  /** Every number the trainer reported in its result. */
  all?: Maybe<Scalars['JSON']['output']>;
  asr?: Maybe<Scalars['Float']['output']>;
  ca?: Maybe<Scalars['Float']['output']>;
  mse?: Maybe<Scalars['Float']['output']>;
  stage1Asr?: Maybe<Scalars['Float']['output']>;
  stage1Ca?: Maybe<Scalars['Float']['output']>;
};

export type Model = {
  __typename?: 'Model';
  architecture: Scalars['String']['output'];
  channels: Scalars['Int']['output'];
  classNames?: Maybe<Array<Scalars['String']['output']>>;
  createdAt: Scalars['DateTime']['output'];
  dtype: ModelDtype;
  /** Machine-readable reason when FAILED: SHA256_MISMATCH or MODEL_MISMATCH (the tensors that differ are named). */
  failureCode?: Maybe<Scalars['String']['output']>;
  failureReason?: Maybe<Scalars['String']['output']>;
  height: Scalars['Int']['output'];
  id: Scalars['ID']['output'];
  name: Scalars['String']['output'];
  numClasses: Scalars['Int']['output'];
  parameters?: Maybe<Scalars['Float']['output']>;
  preprocessing?: Maybe<Scalars['JSON']['output']>;
  sha256: Scalars['String']['output'];
  sizeBytes: Scalars['Float']['output'];
  status: ModelStatus;
  /** Tensors and parameters, once checked. */
  tensors?: Maybe<Scalars['Int']['output']>;
  width: Scalars['Int']['output'];
};

export type ModelConnection = {
  __typename?: 'ModelConnection';
  edges: Array<ModelEdge>;
  pageInfo: PageInfo;
};

export type ModelDtype =
  | 'BFLOAT16'
  | 'FLOAT16'
  | 'FLOAT32';

export type ModelEdge = {
  __typename?: 'ModelEdge';
  cursor: Scalars['String']['output'];
  node: Model;
};

export type ModelInputShapeInput = {
  channels: Scalars['Int']['input'];
  height: Scalars['Int']['input'];
  width: Scalars['Int']['input'];
};

export type ModelStatus =
  | 'AWAITING_UPLOAD'
  | 'FAILED'
  | 'READY'
  | 'VALIDATING';

export type ModelUpload = {
  __typename?: 'ModelUpload';
  model: Model;
  upload: UploadTarget;
};

export type Mutation = {
  __typename?: 'Mutation';
  cancelJob: TrainingJob;
  /** Cancels every live job of the study; it ends CANCELLED once they have stopped. */
  cancelStudy: Study;
  completeDatasetUpload: Dataset;
  /** The file is uploaded: a worker checks it tensor by tensor (VALIDATING, then READY or FAILED). */
  completeModelUpload: Model;
  /** A new key for the caller's tenant; with expiresAt it stops working then. */
  createApiKey: CreatedApiKey;
  createDatasetUpload: DatasetUpload;
  /**
   * Bring your own model: declare a safetensors file of a catalog architecture (its tensor names,
   * e.g. as trapdoor exports them), PUT it to the returned URL, then completeModelUpload.
   */
  createModelUpload: ModelUpload;
  /**
   * A webhook: every event named is POSTed to url, signed (header trapdoor-signature,
   * t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">) with a trapdoor-delivery-id header for
   * de-duplication. The signing secret is returned here only. URLs must be https (unless the operator
   * allows http) and resolve to public addresses (unless the operator allows a network).
   */
  createWebhook: CreatedWebhook;
  deleteDataset: Scalars['Boolean']['output'];
  /** Deletes a finished job with its artifacts and checkpoint (CONFLICT while it is live: cancel it first). */
  deleteJob: Scalars['Boolean']['output'];
  deleteModel: Scalars['Boolean']['output'];
  deleteWebhook: Scalars['Boolean']['output'];
  /**
   * Measure a model (modelId: uploaded; initJobId: an earlier job's) on a TEST set: an EVALUATE job
   * whose metrics hold ca, asr (with an ASR test set and its target) and perClassAccuracy.
   */
  evaluateModel: TrainingJob;
  /**
   * Compare defenses in one call: every method x seed as a job on the same data, through the queue
   * (each counts toward the tenant's live-job cap; at most TRAPDOOR_MAX_STUDY_JOBS per study).
   */
  launchStudy: Study;
  launchTraining: TrainingJob;
  poisonDataset: PoisonDatasetPayload;
  retryJob: TrainingJob;
  revokeApiKey: Scalars['Boolean']['output'];
  /** A new signing secret (returned once); the previous one also signs deliveries for 24 hours. */
  rotateWebhookSecret: CreatedWebhook;
  /**
   * A new TRAIN dataset without the training samples a job's health report flags (built on a
   * worker: VALIDATING, then READY), its lineage in derivedFrom. FAILED_PRECONDITION when the job
   * has no health report or its artifacts expired.
   */
  sanitizeDataset: Dataset;
  /**
   * Scan a TRAIN dataset for poisoning without training a defended model: a queued job (method
   * SCAN) that runs only what the health verdict needs and leaves its report in job.health.
   */
  scanDataset: TrainingJob;
};


export type MutationCancelJobArgs = {
  id: Scalars['ID']['input'];
};


export type MutationCancelStudyArgs = {
  id: Scalars['ID']['input'];
};


export type MutationCompleteDatasetUploadArgs = {
  id: Scalars['ID']['input'];
};


export type MutationCompleteModelUploadArgs = {
  id: Scalars['ID']['input'];
};


export type MutationCreateApiKeyArgs = {
  expiresAt?: InputMaybe<Scalars['DateTime']['input']>;
  name: Scalars['String']['input'];
};


export type MutationCreateDatasetUploadArgs = {
  input: CreateDatasetUploadInput;
};


export type MutationCreateModelUploadArgs = {
  input: CreateModelUploadInput;
};


export type MutationCreateWebhookArgs = {
  input: CreateWebhookInput;
};


export type MutationDeleteDatasetArgs = {
  id: Scalars['ID']['input'];
};


export type MutationDeleteJobArgs = {
  id: Scalars['ID']['input'];
};


export type MutationDeleteModelArgs = {
  id: Scalars['ID']['input'];
};


export type MutationDeleteWebhookArgs = {
  id: Scalars['ID']['input'];
};


export type MutationEvaluateModelArgs = {
  input: EvaluateModelInput;
};


export type MutationLaunchStudyArgs = {
  input: LaunchStudyInput;
};


export type MutationLaunchTrainingArgs = {
  input: LaunchTrainingInput;
};


export type MutationPoisonDatasetArgs = {
  input: PoisonDatasetInput;
};


export type MutationRetryJobArgs = {
  id: Scalars['ID']['input'];
};


export type MutationRevokeApiKeyArgs = {
  id: Scalars['ID']['input'];
};


export type MutationRotateWebhookSecretArgs = {
  id: Scalars['ID']['input'];
};


export type MutationSanitizeDatasetArgs = {
  input: SanitizeDatasetInput;
};


export type MutationScanDatasetArgs = {
  input: ScanDatasetInput;
};

export type Operations = {
  __typename?: 'Operations';
  queues: Array<QueueStatus>;
  quota: Usage;
  usage: Usage;
};

export type PageInfo = {
  __typename?: 'PageInfo';
  endCursor?: Maybe<Scalars['String']['output']>;
  hasNextPage: Scalars['Boolean']['output'];
};

export type PoisonDatasetInput = {
  attack: AttackInput;
  name?: InputMaybe<Scalars['String']['input']>;
  sourceId: Scalars['ID']['input'];
  /** A clean TEST dataset to build the matching ASR test set from (optional). */
  testDatasetId?: InputMaybe<Scalars['ID']['input']>;
};

export type PoisonDatasetPayload = {
  __typename?: 'PoisonDatasetPayload';
  asrTestDataset?: Maybe<Dataset>;
  dataset: Dataset;
};

/** Per-channel normalisation the model was trained with: it is given (x - mean) / std of images in [0,1]. */
export type PreprocessingInput = {
  mean: Array<Scalars['Float']['input']>;
  std: Array<Scalars['Float']['input']>;
};

export type Progress = {
  __typename?: 'Progress';
  epoch?: Maybe<Scalars['Int']['output']>;
  epochs?: Maybe<Scalars['Int']['output']>;
  fraction: Scalars['Float']['output'];
  imagesPerSecond?: Maybe<Scalars['Float']['output']>;
  stage?: Maybe<Scalars['String']['output']>;
};

export type Query = {
  __typename?: 'Query';
  /** Built-in attacks and their parameters, read from the trainer. */
  attacks: Array<Attack>;
  dataset?: Maybe<Dataset>;
  datasets: DatasetConnection;
  job?: Maybe<TrainingJob>;
  jobs: TrainingJobConnection;
  /** Defense methods with their hyper-parameters and defaults, read from the trainer. */
  methods: Array<Method>;
  model?: Maybe<Model>;
  /** The tenant's uploaded models, newest first. */
  models: ModelConnection;
  /** Queues, workers and the caller's usage: what the console's operations view shows. */
  operations: Operations;
  /** The tenant's comparison studies, newest first. */
  studies: StudyConnection;
  study?: Maybe<Study>;
  /** The caller's tenant. */
  viewer: Tenant;
  webhook?: Maybe<Webhook>;
  /** The tenant's webhooks, newest first. */
  webhooks: Array<Webhook>;
};


export type QueryDatasetArgs = {
  id: Scalars['ID']['input'];
};


export type QueryDatasetsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  role?: InputMaybe<DatasetRole>;
};


export type QueryJobArgs = {
  id: Scalars['ID']['input'];
};


export type QueryJobsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  filter?: InputMaybe<JobFilter>;
  first?: InputMaybe<Scalars['Int']['input']>;
  method?: InputMaybe<Scalars['String']['input']>;
  status?: InputMaybe<JobStatus>;
};


export type QueryModelArgs = {
  id: Scalars['ID']['input'];
};


export type QueryModelsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};


export type QueryStudiesArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};


export type QueryStudyArgs = {
  id: Scalars['ID']['input'];
};


export type QueryWebhookArgs = {
  id: Scalars['ID']['input'];
};

/** One queue: work waiting for a worker (every tenant's, counted only), the caller's part of it, live workers. */
export type QueueStatus = {
  __typename?: 'QueueStatus';
  /** An autoscaler starts workers for queued work here (a launch waits instead of being refused). */
  autoscaled: Scalars['Boolean']['output'];
  liveWorkers: Scalars['Int']['output'];
  /** The caller's QUEUED jobs on this queue. */
  mine: Scalars['Int']['output'];
  name: Scalars['String']['output'];
  waiting: Scalars['Int']['output'];
};

export type Resources = {
  __typename?: 'Resources';
  accelerator: Accelerator;
  gpus?: Maybe<Scalars['Int']['output']>;
  maxRuntimeSeconds?: Maybe<Scalars['Int']['output']>;
};

/** What a job asks of its worker. */
export type ResourcesInput = {
  /** CPU (default) or GPU. */
  accelerator?: InputMaybe<Accelerator>;
  /** @deprecated Use accelerator: GPU. */
  gpu?: InputMaybe<Scalars['Boolean']['input']>;
  /** GPUs for the job: GPU only, one of the counts the deployment offers (TRAPDOOR_GPU_COUNTS; default 1). */
  gpus?: InputMaybe<Scalars['Int']['input']>;
  /** Running time (across attempts, from the first start) after which the job is stopped with a checkpoint and FAILED with code MAX_RUNTIME_EXCEEDED. */
  maxRuntimeSeconds?: InputMaybe<Scalars['Int']['input']>;
};

export type SanitizeDatasetInput = {
  /** A SUCCEEDED job with a health report (SCAN or T&R); its training set is the one sanitized. */
  fromJobId: Scalars['ID']['input'];
  /** Default: the source's name + ' (sanitized)'. */
  name?: InputMaybe<Scalars['String']['input']>;
  policy: SanitizePolicyInput;
};

/** Which samples to drop: exactly one rule (else BAD_USER_INPUT). */
export type SanitizePolicyInput = {
  /** The most suspicious round(fraction x N) samples, ranked as health.suspicious ranks them (0 < fraction < 1). */
  dropTopFraction?: InputMaybe<Scalars['Float']['input']>;
  /** These samples (0-based positions in the training set), e.g. chosen from health.suspicious. */
  indices?: InputMaybe<Array<Scalars['Int']['input']>>;
  /** Every sample whose suspicion score is at least this. */
  minScore?: InputMaybe<Scalars['Float']['input']>;
};

/**
 * What a scan spends, as a share of the default T&R run it stands in for (its stage-1 epochs,
 * hyperparameters.tnrStage1Epochs, default 30, T&R's own default): FAST traps for a quarter of them
 * (7), THOROUGH for half (15). Both then fit a probe head on the holdout. Measured cost and reliability: bench/EFFICACY.md.
 */
export type ScanBudget =
  | 'FAST'
  | 'THOROUGH';

export type ScanDatasetInput = {
  architecture?: InputMaybe<Scalars['String']['input']>;
  budget?: InputMaybe<ScanBudget>;
  /** The TRAIN dataset to scan. */
  datasetId: Scalars['ID']['input'];
  externalId?: InputMaybe<Scalars['String']['input']>;
  /** A clean HOLDOUT set of the same shape and classes: the probe's reference (required). */
  holdoutDatasetId: Scalars['ID']['input'];
  /** The SCAN method's other hyper-parameters (methods lists them), e.g. tnrStage1Epochs or trapEpochs. */
  hyperparameters?: InputMaybe<Scalars['JSON']['input']>;
  idempotencyKey: Scalars['String']['input'];
  labels?: InputMaybe<Scalars['JSON']['input']>;
  resources?: InputMaybe<ResourcesInput>;
  seed?: InputMaybe<Scalars['Int']['input']>;
};

export type Study = {
  __typename?: 'Study';
  createdAt: Scalars['DateTime']['output'];
  externalId?: Maybe<Scalars['String']['output']>;
  id: Scalars['ID']['output'];
  /** Its jobs, method by method, seed by seed. */
  jobs: Array<TrainingJob>;
  labels: Scalars['JSON']['output'];
  /**
   * report.tar once every job has ended (null before): README.md (the table and per-method means),
   * table.json, chart.png (mean ASR and CA per method), curves.json and curves.png (per-epoch holdout
   * accuracy), health.json (each job's health verdict).
   */
  report?: Maybe<Artifact>;
  /** The launch input: methods, seeds, datasets, target, architecture. */
  spec: Scalars['JSON']['output'];
  status: StudyStatus;
  table: Array<StudyRow>;
};

export type StudyConnection = {
  __typename?: 'StudyConnection';
  edges: Array<StudyEdge>;
  pageInfo: PageInfo;
};

export type StudyEdge = {
  __typename?: 'StudyEdge';
  cursor: Scalars['String']['output'];
  node: Study;
};

export type StudyMethodInput = {
  hyperparameters?: InputMaybe<Scalars['JSON']['input']>;
  method: Scalars['String']['input'];
};

/** One job of a study: what it measured. */
export type StudyRow = {
  __typename?: 'StudyRow';
  asr?: Maybe<Scalars['Float']['output']>;
  ca?: Maybe<Scalars['Float']['output']>;
  /** The job's health verdict, for methods that write a report. */
  healthVerdict?: Maybe<HealthVerdict>;
  job: TrainingJob;
  method: Scalars['String']['output'];
  mse?: Maybe<Scalars['Float']['output']>;
  /** The trainer's wall time for the job. */
  runtimeSeconds?: Maybe<Scalars['Float']['output']>;
  seed: Scalars['Int']['output'];
  status: JobStatus;
};

export type StudyStatus =
  /** cancelStudy stopped it. */
  | 'CANCELLED'
  /** Every job ended and none succeeded. */
  | 'FAILED'
  /** Every job ended; some failed or were cancelled, some succeeded. */
  | 'PARTIAL'
  /** Some job is still live. */
  | 'RUNNING'
  /** Every job SUCCEEDED. */
  | 'SUCCEEDED';

/** GraphQL over WebSocket (graphql-transport-ws) on the same URL; the API key goes in connectionParams.authorization. */
export type Subscription = {
  __typename?: 'Subscription';
  /**
   * The job now, then again after every change (status, progress, metrics, log) until it is
   * SUCCEEDED, FAILED or CANCELLED, then completes. NOT_FOUND for a job the caller cannot see.
   */
  jobUpdated: TrainingJob;
  /**
   * Every change of any of the caller's jobs (launched, status, progress, metrics), as the job now;
   * several changes of one job in quick succession arrive as one. Never completes by itself. After a
   * lost database connection some changes may be skipped: re-read the list then.
   */
  jobsUpdated: TrainingJob;
};


/** GraphQL over WebSocket (graphql-transport-ws) on the same URL; the API key goes in connectionParams.authorization. */
export type SubscriptionJobUpdatedArgs = {
  id: Scalars['ID']['input'];
};

export type SuspiciousSample = {
  __typename?: 'SuspiciousSample';
  /** Position of the sample in the training dataset (0-based). */
  index: Scalars['Int']['output'];
  /** The sample's label in the training set. */
  label: Scalars['Int']['output'];
  /** 1 = most suspicious. */
  rank: Scalars['Int']['output'];
  /** log p_trapped(label) - log p_clean(label): how much likelier the trapped head finds the sample's label than a head trained on the clean holdout. */
  score: Scalars['Float']['output'];
  /** A PNG of the sample, for the 200 most suspicious (null beyond, and once the job's artifacts expired). */
  thumbnailUrl?: Maybe<Scalars['String']['output']>;
};


export type SuspiciousSampleThumbnailUrlArgs = {
  expiresInSeconds?: InputMaybe<Scalars['Int']['input']>;
};

export type SuspiciousSampleConnection = {
  __typename?: 'SuspiciousSampleConnection';
  edges: Array<SuspiciousSampleEdge>;
  pageInfo: PageInfo;
};

export type SuspiciousSampleEdge = {
  __typename?: 'SuspiciousSampleEdge';
  cursor: Scalars['String']['output'];
  node: SuspiciousSample;
};

export type Tenant = {
  __typename?: 'Tenant';
  /** Every API key of the tenant, newest first (revoked and expired ones included). */
  apiKeys: Array<ApiKey>;
  /** Key, dataset and job mutations made by the tenant's keys, newest first. */
  auditLog: AuditEventConnection;
  id: Scalars['ID']['output'];
  name: Scalars['String']['output'];
  /** What it may hold: a request that would go past it gets QUOTA_EXCEEDED before anything is stored. */
  quota: Usage;
  /** What the tenant holds now. */
  usage: Usage;
};


export type TenantAuditLogArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};

export type TrainingJob = {
  __typename?: 'TrainingJob';
  architecture: Scalars['String']['output'];
  artifacts: Array<Artifact>;
  /** When the artifacts of this finished job will be deleted (TRAPDOOR_ARTIFACT_RETENTION_DAYS); null while it runs or when kept forever. */
  artifactsExpireAt?: Maybe<Scalars['DateTime']['output']>;
  /** When the retention deleted them (artifacts is then empty). */
  artifactsExpiredAt?: Maybe<Scalars['DateTime']['output']>;
  attempt: Scalars['Int']['output'];
  createdAt: Scalars['DateTime']['output'];
  device?: Maybe<Scalars['JSON']['output']>;
  error?: Maybe<JobError>;
  externalId?: Maybe<Scalars['String']['output']>;
  /** The training set's health report, for jobs that compute one (T&R, SCAN) once they SUCCEEDED; null otherwise. */
  health?: Maybe<Health>;
  history: Array<MetricPoint>;
  hyperparameters: Scalars['JSON']['output'];
  id: Scalars['ID']['output'];
  /** The launching platform's labels ({} when none) and id. */
  labels: Scalars['JSON']['output'];
  logTail: Array<Scalars['String']['output']>;
  method: Scalars['String']['output'];
  metrics?: Maybe<Metrics>;
  progress?: Maybe<Progress>;
  resources: Resources;
  status: JobStatus;
  transitions: Array<Transition>;
  updatedAt: Scalars['DateTime']['output'];
  /** Why a QUEUED job waits (e.g. no worker serves its queue yet); null in other states. */
  waitingReason?: Maybe<Scalars['String']['output']>;
  worker?: Maybe<Scalars['String']['output']>;
};


export type TrainingJobHistoryArgs = {
  name?: InputMaybe<Scalars['String']['input']>;
  stage?: InputMaybe<Scalars['String']['input']>;
};

export type TrainingJobConnection = {
  __typename?: 'TrainingJobConnection';
  edges: Array<TrainingJobEdge>;
  pageInfo: PageInfo;
};

export type TrainingJobEdge = {
  __typename?: 'TrainingJobEdge';
  cursor: Scalars['String']['output'];
  node: TrainingJob;
};

export type Transition = {
  __typename?: 'Transition';
  at: Scalars['DateTime']['output'];
  from?: Maybe<JobStatus>;
  reason?: Maybe<Scalars['String']['output']>;
  to: JobStatus;
};

export type UploadPartInput = {
  /** Part name: images or labels for two-file formats, archive for NPZ and the archive formats. */
  name: Scalars['String']['input'];
  sha256: Scalars['String']['input'];
  sizeBytes: Scalars['Float']['input'];
};

export type UploadTarget = {
  __typename?: 'UploadTarget';
  expiresAt: Scalars['DateTime']['output'];
  headers: Scalars['JSON']['output'];
  method: Scalars['String']['output'];
  part: Scalars['String']['output'];
  url: Scalars['String']['output'];
};

/** Bytes stored (raw uploads as declared, canonical datasets, job artifacts), datasets kept, live jobs. */
export type Usage = {
  __typename?: 'Usage';
  bytes: Scalars['Float']['output'];
  datasets: Scalars['Int']['output'];
  liveJobs: Scalars['Int']['output'];
};

export type Webhook = {
  __typename?: 'Webhook';
  createdAt: Scalars['DateTime']['output'];
  /** Newest first. */
  deliveries: WebhookDeliveryConnection;
  events: Array<WebhookEvent>;
  id: Scalars['ID']['output'];
  secretRotatedAt?: Maybe<Scalars['DateTime']['output']>;
  url: Scalars['String']['output'];
};


export type WebhookDeliveriesArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};

export type WebhookDelivery = {
  __typename?: 'WebhookDelivery';
  attempts: Scalars['Int']['output'];
  createdAt: Scalars['DateTime']['output'];
  deliveredAt?: Maybe<Scalars['DateTime']['output']>;
  event: WebhookEvent;
  /** Also sent as the trapdoor-delivery-id header: a receiver drops a delivery it has seen. */
  id: Scalars['ID']['output'];
  lastError?: Maybe<Scalars['String']['output']>;
  lastStatusCode?: Maybe<Scalars['Int']['output']>;
  /** The body that is POSTed: {id, event, createdAt, data}. */
  payload: Scalars['JSON']['output'];
  status: DeliveryStatus;
};

export type WebhookDeliveryConnection = {
  __typename?: 'WebhookDeliveryConnection';
  edges: Array<WebhookDeliveryEdge>;
  pageInfo: PageInfo;
};

export type WebhookDeliveryEdge = {
  __typename?: 'WebhookDeliveryEdge';
  cursor: Scalars['String']['output'];
  node: WebhookDelivery;
};

export type WebhookEvent =
  | 'DATASET_FAILED'
  | 'DATASET_READY'
  | 'JOB_CANCELLED'
  | 'JOB_FAILED'
  | 'JOB_SUCCEEDED'
  /** Every job of a study has ended. */
  | 'STUDY_DONE';
