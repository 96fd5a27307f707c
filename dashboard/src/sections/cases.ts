// The stored collection: newest first, 20 per page, cursor paging with a stack
// of cursors for Previous, optional filters by area and state.

import { api, ApiError, type CasesPage } from "../api";
import { byTestId, emptyRow, setText, showError, tableBody } from "../dom";
import { formatCount } from "../format";
import { throttled } from "../throttle";
import { caseRow, type Column } from "./caseRows";

const PAGE_SIZE = 20;
const COLUMNS: Column[] = ["name", "location", "age", "infectedtype", "state", "path", "revision", "when"];

export function createCasesSection() {
  const rows = tableBody("cases-table");
  const table = byTestId<HTMLTableElement>("cases-table");
  const next = byTestId<HTMLButtonElement>("cases-next");
  const prev = byTestId<HTMLButtonElement>("cases-prev");
  const pageLabel = byTestId("cases-page");
  const areaSelect = byTestId<HTMLSelectElement>("filter-area");
  const stateSelect = byTestId<HTMLSelectElement>("filter-state");
  const error = byTestId("cases-error");

  // cursors[i] is the `after` cursor of page i + 1; the first page has none.
  let cursors: (string | undefined)[] = [undefined];
  let page: CasesPage = { cases: [], next: null };
  let loading = false;
  let request = 0;

  function renderControls(): void {
    // Not disabled while loading: first-page refreshes run often under load,
    // and a click simply supersedes them (see `request`).
    prev.disabled = cursors.length === 1;
    next.disabled = page.next === null;
    const first = (cursors.length - 1) * PAGE_SIZE + 1;
    const range =
      page.cases.length === 0 ? "no cases" : `cases ${formatCount(first)}–${formatCount(first + page.cases.length - 1)}`;
    setText(pageLabel, `Page ${formatCount(cursors.length)}, ${range}`);
    table.setAttribute("aria-busy", String(loading));
  }

  async function load(): Promise<void> {
    const id = ++request;
    loading = true;
    renderControls();
    try {
      const result = await api.cases({
        limit: PAGE_SIZE,
        after: cursors.at(-1),
        location: areaSelect.value,
        state: stateSelect.value,
      });
      if (id !== request) return; // a newer request (filter change, paging) won
      page = result;
      rows.replaceChildren(...page.cases.map((c) => caseRow(c, "case", COLUMNS)));
      if (page.cases.length === 0) {
        const filtered = areaSelect.value !== "" || stateSelect.value !== "";
        const text = cursors.length > 1 ? "No older cases" : filtered ? "No cases match the filters" : "No cases yet";
        rows.append(emptyRow(COLUMNS.length, text));
      }
      showError(error, null);
    } catch (e) {
      if (id === request) showError(error, `Could not load cases: ${e instanceof ApiError ? e.message : String(e)}`);
    } finally {
      if (id === request) {
        loading = false;
        renderControls();
      }
    }
  }

  const refreshFirstPage = throttled(async () => {
    if (cursors.length === 1) await load();
  }, 500);

  async function loadFilters(): Promise<void> {
    try {
      const [areas, states] = await Promise.all([api.topAreas(50), api.states()]);
      setOptions(areaSelect, areas.map((a) => a.location).sort((a, b) => a.localeCompare(b)));
      setOptions(stateSelect, states.map((s) => s.state).sort((a, b) => a.localeCompare(b)));
    } catch (e) {
      showError(error, `Could not load filters: ${e instanceof ApiError ? e.message : String(e)}`);
    }
  }
  const refreshFilters = throttled(loadFilters, 3000);

  next.addEventListener("click", () => {
    if (page.next === null) return;
    cursors.push(page.next);
    page = { ...page, next: null }; // one page forward per click, even on a double click
    void load();
  });
  prev.addEventListener("click", () => {
    if (cursors.length === 1) return;
    cursors.pop();
    void load();
  });
  for (const select of [areaSelect, stateSelect]) {
    select.addEventListener("change", () => {
      cursors = [undefined];
      void load();
    });
  }

  return {
    start(): void {
      void load();
      void loadFilters();
    },
    /** New cases were stored: refresh the view only when the user is on the first page. */
    casesArrived(): void {
      if (cursors.length === 1) refreshFirstPage();
      refreshFilters();
    },
  };
}

/** Replaces a filter's options, keeping the first ("All") option and the current choice. */
function setOptions(select: HTMLSelectElement, values: string[]): void {
  const current = select.value;
  if (current !== "" && !values.includes(current)) values.push(current);
  const existing = Array.from(select.options).slice(1).map((o) => o.value);
  if (existing.length === values.length && existing.every((v, i) => v === values[i])) return;
  const all = select.options[0];
  select.replaceChildren(...(all ? [all] : []), ...values.map((v) => new Option(v, v)));
  select.value = current;
}
