// Small DOM helpers. Text from the API only ever goes through textContent.

/** The element with this data-testid; throws at startup if index.html lacks it. */
export function byTestId<T extends HTMLElement = HTMLElement>(id: string, root: ParentNode = document): T {
  const el = root.querySelector<T>(`[data-testid="${id}"]`);
  if (!el) throw new Error(`index.html has no [data-testid=${id}]`);
  return el;
}

/** Creates an element with optional class, data-testid and text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  opts: { className?: string; testid?: string; text?: string | number; scope?: string } = {},
  ...children: Node[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (opts.className) node.className = opts.className;
  if (opts.testid) node.dataset.testid = opts.testid;
  if (opts.text !== undefined) node.textContent = String(opts.text);
  if (opts.scope) node.setAttribute("scope", opts.scope);
  node.append(...children);
  return node;
}

/** Sets text only when it changed (avoids needless layout and screen-reader chatter). */
export function setText(node: Element, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

/** Shows an error message in a card's error slot, or hides the slot when `message` is null. */
export function showError(slot: HTMLElement, message: string | null): void {
  slot.hidden = message === null;
  slot.textContent = message ?? "";
}

/** A table row with one cell spanning the table, for "no data" states. */
export function emptyRow(columns: number, text: string): HTMLTableRowElement {
  const cell = el("td", { className: "empty", text });
  cell.colSpan = columns;
  return el("tr", {}, cell);
}

/** A small coloured square matching a chart slice (decorative). */
export function swatch(color: string): HTMLSpanElement {
  const node = el("span", { className: "swatch" });
  node.style.background = color;
  node.setAttribute("aria-hidden", "true");
  return node;
}

/** The <tbody> of the table with this data-testid. */
export function tableBody(testid: string): HTMLTableSectionElement {
  const body = byTestId<HTMLTableElement>(testid).tBodies.item(0);
  if (!body) throw new Error(`[data-testid=${testid}] has no <tbody>`);
  return body;
}

/** Sets the column heading a phone shows beside a stacked cell (CSS `attr(data-label)`). */
export function labelled(label: string, cell: HTMLTableCellElement): HTMLTableCellElement {
  cell.dataset.label = label;
  return cell;
}
