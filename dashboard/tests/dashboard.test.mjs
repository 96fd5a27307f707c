// End-to-end browser test of the dashboard against a running, FRESH stack
// (empty database): posts known cases through both ingest paths, then checks
// every section in headless Chromium, live updates without reload, and the
// phone layout. Run with `npm test` (node --test).
//
// Environment:
//   DASHBOARD_URL     dashboard-api, e.g. http://127.0.0.1:8080 (required)
//   INGEST_GRPC_URL   ingest on the gRPC path, e.g. http://127.0.0.1:8081 (required)
//   INGEST_REDIS_URL  ingest on the Redis path, e.g. http://127.0.0.1:8082 (required)
//   INGEST_TOKEN      sent as `Authorization: Bearer …` when set
//   ARTIFACTS_DIR     screenshots (default dashboard/test-artifacts)
//   CHROMIUM_PATH     browser binary (default /usr/bin/chromium: apt-get install -y chromium)

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS_DIR = path.resolve(process.env.ARTIFACTS_DIR || path.join(HERE, "..", "test-artifacts"));
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
const LAPTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };
/** Product requirement: a stored case shows on the open page within 2 s. */
const LIVE_UPDATE_MS = 2000;

const RUN = Date.now().toString(36).slice(-5);
const AGE_RANGES = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+"];

// [name, location, age, state]. Chosen so that top-3 areas, states and age
// buckets have no ties: Guatemala 7, Petén 5, Izabal 3 (then 2, 2, 1);
// active 8, recovered 6, hospitalized 4, deceased 2.
const FIRST_GRPC = [
  ["Ana", "Guatemala", 0, "active"],
  ["Luis", "Guatemala", 10, "active"],
  ["María", "Guatemala", 19, "recovered"],
  ["José", "Guatemala", 20, "active"],
  ["Carmen", "Guatemala", 25, "hospitalized"],
  ["Pedro", "Petén", 29, "active"],
  ["Sofía", "Petén", 29, "recovered"],
  ["Diego", "Petén", 30, "deceased"],
  ["Lucía", "Izabal", 35, "active"],
  ["Jorge", "Izabal", 39, "recovered"],
  ["Elena", "Escuintla", 40, "hospitalized"],
  ["Raúl", "Zacapa", 49, "active"],
].map(toCase);
const FIRST_REDIS = [
  ["Marta", "Guatemala", 50, "recovered"],
  ["Hugo", "Guatemala", 59, "active"],
  ["Rosa", "Petén", 60, "hospitalized"],
  ["Iván", "Petén", 69, "recovered"],
  ["Julia", "Izabal", 70, "deceased"],
  ["Óscar", "Escuintla", 85, "recovered"],
  ["Alba", "Zacapa", 90, "active"],
  ["Tomás", "Jutiapa", 130, "hospitalized"],
].map(toCase);
// Posted later to the Redis path while the page is open: Petén overtakes
// Guatemala (8 vs 7), Izabal stays third (5).
const LATER_REDIS = [
  ["Nora", "Petén", 3, "active"],
  ["Pablo", "Petén", 95, "active"],
  ["Inés", "Petén", 8, "active"],
  ["Saúl", "Izabal", 91, "active"],
  ["Vera", "Izabal", 5, "active"],
].map(toCase);

function toCase([name, location, age, state]) {
  // A per-run suffix makes our cases recognisable in the tables.
  return { name: `${name} ${RUN}`, location, age, infectedtype: age % 2 ? "imported" : "communitary", state };
}

/** What the dashboard must show for a list of stored cases. */
function expectations(cases) {
  const count = (key) => {
    const m = new Map();
    for (const c of cases) m.set(key(c), (m.get(key(c)) ?? 0) + 1);
    return m;
  };
  const areas = [...count((c) => c.location)].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  assert.ok(areas.length < 4 || areas[2][1] > areas[3][1], "test data: the top-3 areas must not tie with the 4th");
  const ages = count((c) => Math.min(9, Math.floor(c.age / 10)));
  return {
    total: cases.length,
    topAreas: areas.slice(0, 3),
    states: Object.fromEntries(count((c) => c.state)),
    ages: AGE_RANGES.map((range, i) => [range, ages.get(i) ?? 0]),
  };
}

function requireEnv(name, example) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: point it at the running stack (e.g. ${name}=${example}); this test needs a fresh stack`);
  }
  return value.replace(/\/+$/, "");
}

let env;
let userDataDir;
let context;
let page;
const consoleProblems = [];

before(async () => {
  env = {
    dashboard: requireEnv("DASHBOARD_URL", "http://127.0.0.1:8080"),
    grpc: requireEnv("INGEST_GRPC_URL", "http://127.0.0.1:8081"),
    redis: requireEnv("INGEST_REDIS_URL", "http://127.0.0.1:8082"),
    token: process.env.INGEST_TOKEN || "",
  };
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: install it with 'apt-get install -y chromium' or set CHROMIUM_PATH`);
  }
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-test-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: LAPTOP,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(10_000);
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") consoleProblems.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (error) => consoleProblems.push(`page error: ${error.message}`));
});

after(async () => {
  if (page && failed) {
    const shot = path.join(ARTIFACTS_DIR, "failure.png");
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.log(`failure screenshot: ${shot}`);
  }
  await context?.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

// Steps share one page; after a failure the later steps fail fast instead of
// timing out one by one on a page in an unknown state.
let failed = false;
function step(name, fn) {
  test(name, async (t) => {
    if (failed) throw new Error("not run: an earlier step failed");
    try {
      await fn(t);
    } catch (error) {
      failed = true;
      throw error;
    }
  });
}

async function getJson(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  const text = await response.text();
  assert.equal(response.status, 200, `GET ${url}: ${response.status} ${text}`);
  return JSON.parse(text);
}

async function postCases(baseUrl, cases) {
  const headers = { "content-type": "application/json" };
  if (env.token) headers.authorization = `Bearer ${env.token}`;
  const url = `${baseUrl}/cases`;
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(cases) });
  const text = await response.text();
  assert.equal(response.status, 202, `POST ${url} (${cases.length} cases): ${response.status} ${text}`);
}

async function waitForTotal(total, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let seen;
  while (Date.now() < deadline) {
    try {
      seen = (await getJson(`${env.dashboard}/api/summary`)).total;
      if (seen === total) return;
      assert.ok(seen < total, `/api/summary total is ${seen}, more than the ${total} expected: is the stack fresh (empty database)?`);
    } catch (error) {
      if (error instanceof assert.AssertionError && String(error.message).includes("is the stack fresh")) throw error;
      seen = String(error.message ?? error);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`/api/summary did not reach total ${total} within ${timeoutMs} ms (last: ${seen})`);
}

const number = (text) => Number(String(text).replace(/[^\d]/g, ""));
const texts = (selector) => page.$$eval(selector, (els) => els.map((e) => (e.textContent ?? "").trim()));
const text = (testid) => page.textContent(`[data-testid="${testid}"]`).then((s) => (s ?? "").trim());

/** Rows of a table or list as arrays of cell texts, e.g. rows("state-row", ["state-name", "state-cases"]). */
function rows(rowId, cellIds) {
  return page.$$eval(
    `[data-testid="${rowId}"]`,
    (els, ids) => els.map((row) => ids.map((id) => (row.querySelector(`[data-testid="${id}"]`)?.textContent ?? "").trim())),
    cellIds,
  );
}

async function checkSections(expected, postedNames) {
  assert.equal(number(await text("total")), expected.total, "total");

  const areas = await page.$$eval('[data-testid="top-areas"] > li', (lis) =>
    lis.map((li) => [
      (li.querySelector('[data-testid="area-name"]')?.textContent ?? "").trim(),
      (li.querySelector('[data-testid="area-cases"]')?.textContent ?? "").trim(),
    ]),
  );
  assert.deepEqual(
    areas.map(([name, cases]) => [name, number(cases)]),
    expected.topAreas,
    "top-3 areas (name, cases) in order",
  );

  const states = Object.fromEntries(
    (await rows("state-row", ["state-name", "state-cases"])).map(([name, cases]) => [name, number(cases)]),
  );
  assert.deepEqual(states, expected.states, "cases per state");

  const ages = (await rows("age-row", ["age-range", "age-cases"])).map(([range, cases]) => [range, number(cases)]);
  assert.deepEqual(ages, expected.ages, "cases per age range (all 10 buckets)");

  const recent = (await rows("recent-row", ["recent-name"])).map(([name]) => name);
  assert.equal(recent.length, 5, "last 5 cases: row count");
  for (const name of recent) assert.ok(postedNames.includes(name), `last 5 cases: unexpected name ${JSON.stringify(name)}`);
}

/** Waits until a DOM condition holds; on timeout, fails with `what` and the page's current values. */
async function waitForPage(what, fn, arg, timeout) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (error) {
    const now = await page.evaluate(() =>
      JSON.stringify({
        total: document.querySelector('[data-testid="total"]')?.textContent,
        connection: document.querySelector('[data-testid="connection"]')?.textContent,
      }),
    );
    throw new Error(`${what} (page shows ${now}): ${error.message.split("\n")[0]}`);
  }
}

/** Reads every page of the stored collection (Next until disabled) and returns to page 1 with Previous. */
async function readAllCasePages() {
  const pages = [];
  for (;;) {
    pages.push((await rows("case-row", ["case-name"])).map(([name]) => name));
    assert.ok(pages.length <= 20, "stored cases: more than 20 pages");
    if (await page.isDisabled('[data-testid="cases-next"]')) break;
    const before = await page.textContent('[data-testid="cases-page"]');
    await page.click('[data-testid="cases-next"]');
    await waitForPage(
      "stored cases: Next loads the next page",
      (label) => {
        const t = document.querySelector('[data-testid="cases-table"]');
        return t?.getAttribute("aria-busy") === "false" && document.querySelector('[data-testid="cases-page"]')?.textContent !== label;
      },
      before,
      5000,
    );
  }
  while (!(await page.isDisabled('[data-testid="cases-prev"]'))) {
    await page.click('[data-testid="cases-prev"]');
    await waitForPage(
      "stored cases: Previous goes back",
      () => document.querySelector('[data-testid="cases-table"]')?.getAttribute("aria-busy") === "false",
      undefined,
      5000,
    );
  }
  const first = (await rows("case-row", ["case-name"])).map(([name]) => name);
  assert.deepEqual(first, pages[0], "stored cases: Previous returns to the first page");
  return pages;
}

async function selectFilter(testid, value, expectedRows, check) {
  await waitForPage(
    `${testid} offers ${value}`,
    ([id, v]) => [...(document.querySelector(`[data-testid="${id}"]`)?.options ?? [])].some((o) => o.value === v),
    [testid, value],
    5000,
  );
  await page.selectOption(`[data-testid="${testid}"]`, value);
  await waitForPage(
    `stored cases filtered by ${testid}=${value} show ${expectedRows} rows`,
    ([n, column, v]) => {
      const t = document.querySelector('[data-testid="cases-table"]');
      const cells = [...document.querySelectorAll(`[data-testid="case-row"] [data-testid="case-${column}"]`)];
      return t?.getAttribute("aria-busy") === "false" && cells.length === n && cells.every((c) => c.textContent?.trim() === v);
    },
    [expectedRows, check, value],
    5000,
  );
  await page.selectOption(`[data-testid="${testid}"]`, "");
  await waitForPage(
    `stored cases without the ${testid} filter`,
    () => document.querySelectorAll('[data-testid="case-row"]').length === 20,
    undefined,
    5000,
  );
}

const first = [...FIRST_GRPC, ...FIRST_REDIS];
const all = [...first, ...LATER_REDIS];

step("the stack is up and fresh", async () => {
  await waitForTotal(0, 15_000);
});

step("ingest accepts 12 cases on the gRPC path and 8 on the Redis path", async () => {
  await Promise.all([postCases(env.grpc, FIRST_GRPC), postCases(env.redis, FIRST_REDIS)]);
  await waitForTotal(20, 15_000);
});

step("the dashboard shows the stored cases in every section", async (t) => {
  await page.goto(`${env.dashboard}/`);
  await waitForPage(
    "page shows total 20 and a live connection",
    () =>
      document.querySelector('[data-testid="total"]')?.textContent?.replace(/\D/g, "") === "20" &&
      document.querySelector('[data-testid="connection"]')?.textContent?.trim() === "live",
    undefined,
    10_000,
  );
  assert.equal(await text("connection"), "live");
  assert.equal(number(await text("path-grpc")), 12, "gRPC path count");
  assert.equal(number(await text("path-redis")), 8, "Redis path count");
  assert.match(await page.getAttribute('[data-testid="last-updated"]', "title"), /^\d{4}-\d\d-\d\dT/, "last updated: ISO on hover");

  const revisions = (await rows("revision-row", ["revision-name", "revision-cases"])).map(([n, c]) => [n, number(c)]);
  assert.ok(revisions.length > 0, "cases per revision: no rows (does the stack set K_REVISION?)");
  assert.equal(revisions.reduce((s, [, c]) => s + c, 0), 20, `cases per revision add up to 20: ${JSON.stringify(revisions)}`);

  await checkSections(expectations(first), first.map((c) => c.name));

  await waitForPage(
    "stored cases: the first page shows 20 rows",
    () =>
      document.querySelector('[data-testid="cases-table"]')?.getAttribute("aria-busy") === "false" &&
      document.querySelectorAll('[data-testid="case-row"]').length === 20,
    undefined,
    5000,
  );
  const pages = await readAllCasePages();
  assert.equal(pages[0].length, 20, "stored cases: page 1 has 20 rows");
  assert.deepEqual(pages.flat().sort(), first.map((c) => c.name).sort(), "stored cases: every posted case, once");
  t.diagnostic(`stored cases pages: ${pages.map((p) => p.length).join(", ")}`);

  await selectFilter("filter-area", "Guatemala", 7, "location");
  await selectFilter("filter-state", "recovered", 6, "state");

  const shot = path.join(ARTIFACTS_DIR, "dashboard-initial.png");
  await page.screenshot({ path: shot, fullPage: true });
});

step("new cases appear without reload (total within 2 s)", async () => {
  await postCases(env.redis, LATER_REDIS);
  const accepted = Date.now();
  await waitForPage(
    `total shows 25 within ${LIVE_UPDATE_MS} ms of the 202`,
    () => document.querySelector('[data-testid="total"]')?.textContent?.replace(/\D/g, "") === "25",
    undefined,
    Math.max(1, LIVE_UPDATE_MS - (Date.now() - accepted)),
  );
  const expected = expectations(all);
  const newNames = LATER_REDIS.map((c) => c.name);
  // The rest of the snapshot arrives with (or right after) the total.
  await waitForPage(
    "top areas, ages and last 5 cases update",
    ([top, names]) => {
      const li = document.querySelector('[data-testid="top-areas"] li [data-testid="area-name"]');
      const recent = [...document.querySelectorAll('[data-testid="recent-name"]')].map((e) => e.textContent?.trim());
      return li?.textContent?.trim() === top && recent.length === 5 && recent.every((n) => names.includes(n));
    },
    [expected.topAreas[0][0], newNames],
    5000,
  );
  await checkSections(expected, newNames);
  assert.equal(number(await text("path-redis")), 13, "Redis path count after the new cases");
  assert.equal(number(await text("path-grpc")), 12, "gRPC path count after the new cases");

  // On the first page the stored collection refreshes by itself: newest first.
  await waitForPage(
    "stored cases (first page) show the new cases on top",
    (names) => {
      const top = [...document.querySelectorAll('[data-testid="case-row"] [data-testid="case-name"]')]
        .slice(0, 5)
        .map((e) => e.textContent?.trim());
      return top.length === 5 && top.every((n) => names.includes(n));
    },
    newNames,
    5000,
  );
  const pages = await readAllCasePages();
  assert.deepEqual(pages.flat().sort(), all.map((c) => c.name).sort(), "stored cases: all 25, once");
  assert.equal(await text("connection"), "live");
});

step("the ingest log sums each path's accepted requests and cases", async () => {
  // 1 request of 12 cases on the gRPC path; 2 requests, 8 and 5 cases, on the Redis path.
  await waitForPage(
    "ingest log: gRPC 1 request / 12 cases, Redis 2 requests / 13 cases accepted",
    () => {
      const sums = {};
      for (const row of document.querySelectorAll('[data-testid="ingest-row"]')) {
        const cell = (id) => row.querySelector(`[data-testid="${id}"]`)?.textContent?.trim() ?? "";
        if (cell("ingest-result") !== "accepted") continue;
        const s = (sums[cell("ingest-path")] ??= [0, 0]);
        s[0] += Number(cell("ingest-requests").replace(/\D/g, ""));
        s[1] += Number(cell("ingest-cases").replace(/\D/g, ""));
      }
      return String(sums.gRPC) === "1,12" && String(sums.Redis) === "2,13";
    },
    undefined,
    15_000,
  );
});

step("laptop screenshot", async (t) => {
  await page.setViewportSize(LAPTOP);
  const shot = path.join(ARTIFACTS_DIR, "dashboard.png");
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);
});

step("phone width: one column, no horizontal scrollbar", async (t) => {
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(300); // let charts re-measure
  const layout = await page.evaluate(() => {
    const cards = [...document.querySelectorAll(".card")].map((c) => c.getBoundingClientRect());
    return {
      scrollWidth: document.documentElement.scrollWidth,
      clientWidth: document.documentElement.clientWidth,
      lefts: [...new Set(cards.map((r) => Math.round(r.left)))],
      widest: Math.max(...cards.map((r) => r.right)),
    };
  });
  assert.ok(layout.scrollWidth <= layout.clientWidth, `horizontal scroll at 390px: ${JSON.stringify(layout)}`);
  assert.equal(layout.lefts.length, 1, `cards in one column at 390px: ${JSON.stringify(layout)}`);
  assert.ok(layout.widest <= PHONE.width, `a card sticks out at 390px: ${JSON.stringify(layout)}`);
  const shot = path.join(ARTIFACTS_DIR, "phone.png");
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);
});

step("no console errors or warnings", async () => {
  assert.deepEqual(consoleProblems, [], "console errors/warnings on the page");
});
