// Typed access to dashboard-api's JSON API (same origin, under `api/`).
// The types mirror the contract dashboard-api implements; see README.md.

export type Path = "grpc" | "redis" | "http";

/** Counts keyed by ingest path or by serving revision name. */
export type Counts = Record<string, number>;

export interface Rate {
  window_s: number;
  /** Cases per second over the window (float). */
  total: number;
  by_path: Counts;
  by_revision: Counts;
}

export interface SeriesPoint {
  /** Unix seconds. */
  t: number;
  /** Cases stored in that second. */
  by_path: Counts;
  by_revision: Counts;
}

export interface Summary {
  total: number;
  by_path: Counts;
  by_revision: Counts;
  rate: Rate;
  /** One entry per second for the last 60 s, oldest first. */
  series: SeriesPoint[];
  /** Time of the latest stored case (ms since epoch); null before any case. */
  updated_ms: number | null;
}

export interface Area {
  location: string;
  cases: number;
}

export interface StateCount {
  state: string;
  cases: number;
}

export interface AgeBucket {
  range: string;
  cases: number;
}

export interface StoredCase {
  id: string;
  name: string;
  location: string;
  age: number;
  infectedtype: string;
  state: string;
  path: Path;
  revision?: string;
  reported_ms: number;
  stored_ms: number;
}

export interface Snapshot {
  summary: Summary;
  top_areas: Area[];
  states: StateCount[];
  recent: StoredCase[];
  ages: AgeBucket[];
}

export interface CasesPage {
  cases: StoredCase[];
  /** Opaque cursor of the next (older) page; null on the last page. */
  next: string | null;
}

/** The requests of one kind (path, result, reason, revision) within one second. */
export interface IngestLogEntry {
  /** The newest request's time. */
  time_ms: number;
  path: Path;
  result: "accepted" | "refused" | "unavailable" | "outcome_unknown";
  reason?: string;
  requests: number;
  cases: number;
  bytes: number;
  revision?: string;
}

export interface CasesQuery {
  limit: number;
  after?: string | undefined;
  location?: string | undefined;
  state?: string | undefined;
}

/** An API call that failed; `message` is the server's `error` text when it sent one. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** Resolved against the page URL, so a path prefix in front of dashboard-api works. */
export function apiUrl(path: string, params: Record<string, string | number | undefined> = {}): string {
  const url = new URL(`api/${path}`, document.baseURI);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") url.searchParams.set(key, String(value));
  }
  return url.toString();
}

async function getJson<T>(path: string, params?: Record<string, string | number | undefined>): Promise<T> {
  let response: Response;
  try {
    response = await fetch(apiUrl(path, params), { headers: { accept: "application/json" } });
  } catch {
    throw new ApiError("dashboard-api is unreachable", 0);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body: unknown = await response.json();
      if (isRecord(body) && typeof body.error === "string") message = body.error;
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError(message, response.status);
  }
  return (await response.json()) as T;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks the outer shape of a snapshot (from GET or an SSE event) before it reaches the DOM. */
export function toSnapshot(value: unknown): Snapshot {
  if (
    !isRecord(value) ||
    !isRecord(value.summary) ||
    typeof value.summary.total !== "number" ||
    !Array.isArray(value.top_areas) ||
    !Array.isArray(value.states) ||
    !Array.isArray(value.recent) ||
    !Array.isArray(value.ages)
  ) {
    throw new Error("snapshot has an unexpected shape");
  }
  return value as unknown as Snapshot;
}

export const api = {
  snapshot: async () => toSnapshot(await getJson<unknown>("snapshot")),
  summary: () => getJson<Summary>("summary"),
  topAreas: async (n: number) => (await getJson<{ areas: Area[] }>("areas/top", { n })).areas,
  states: async () => (await getJson<{ states: StateCount[] }>("states")).states,
  recent: async () => (await getJson<{ cases: StoredCase[] }>("cases/recent")).cases,
  ages: async () => (await getJson<{ buckets: AgeBucket[] }>("ages")).buckets,
  cases: (q: CasesQuery) =>
    getJson<CasesPage>("cases", { limit: q.limit, after: q.after, location: q.location, state: q.state }),
  ingestLog: async (limit: number) =>
    (await getJson<{ entries: IngestLogEntry[] }>("ingest-log", { limit })).entries,
  streamUrl: () => apiUrl("stream"),
};
