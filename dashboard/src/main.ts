// Wiring: one snapshot (first from GET /api/snapshot, then from every SSE
// `snapshot` event) updates every section in place.

// Order matters: each sheet may override the one before.
import "./style.css";
import "./sections.css";
import "./responsive.css";
import { api, ApiError, type Snapshot } from "./api";
import { byTestId, showError } from "./dom";
import { refreshTimes } from "./format";
import { connectLive } from "./live";
import { createAgesSection } from "./sections/ages";
import { createAreasSection } from "./sections/areas";
import { createCasesSection } from "./sections/cases";
import { createHeader } from "./sections/header";
import { createIngestLogSection } from "./sections/ingestLog";
import { createPathsSection } from "./sections/paths";
import { createRecentSection } from "./sections/recent";
import { createRevisionsSection } from "./sections/revisions";
import { createStatesSection } from "./sections/states";

const header = createHeader();
const paths = createPathsSection();
const revisions = createRevisionsSection();
const areas = createAreasSection();
const states = createStatesSection();
const ages = createAgesSection();
const recent = createRecentSection();
const cases = createCasesSection();
const ingestLog = createIngestLogSection();
const banner = byTestId("banner");

let lastTotal: number | undefined;
let streamed = false;
let connectedBefore = false;

function render(snapshot: Snapshot): void {
  header.update(snapshot.summary);
  paths.update(snapshot.summary);
  revisions.update(snapshot.summary);
  areas.update(snapshot.top_areas);
  states.update(snapshot.states);
  ages.update(snapshot.ages);
  recent.update(snapshot.recent);
  if (lastTotal !== undefined && snapshot.summary.total !== lastTotal) {
    cases.casesArrived();
    ingestLog.refresh();
    // ingest writes its log off the request path, possibly after the case is counted.
    setTimeout(ingestLog.refresh, 1500);
  }
  lastTotal = snapshot.summary.total;
  showError(banner, null);
}

header.setConnection("offline");
connectLive(api.streamUrl(), {
  snapshot(snapshot) {
    streamed = true;
    render(snapshot);
  },
  state(state) {
    header.setConnection(state);
    if (state !== "live") return;
    // A reconnect may have missed changes while away: re-read the side lists.
    if (connectedBefore) {
      cases.casesArrived();
      ingestLog.refresh();
    }
    connectedBefore = true;
  },
  invalid(message) {
    showError(banner, `Ignored a live update: ${message}`);
  },
});

// The stream sends a snapshot on connect too; this covers proxies that delay SSE.
api
  .snapshot()
  .then((snapshot) => {
    if (!streamed) render(snapshot);
  })
  .catch((e: unknown) => {
    if (!streamed) showError(banner, `Could not load statistics: ${e instanceof ApiError ? e.message : String(e)}`);
  });

cases.start();
ingestLog.refresh();

setInterval(() => {
  refreshTimes();
  paths.tick();
}, 1000);
// Refused requests change no statistics (no snapshot), so poll the log too.
setInterval(ingestLog.refresh, 5000);
