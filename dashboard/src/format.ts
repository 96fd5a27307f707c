// Number and time formatting with the browser's locale (Intl).

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "long" });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });

export const formatCount = (n: number): string => integer.format(n);
export const formatRate = (perSecond: number): string => decimal.format(perSecond);
export const formatShare = (part: number, whole: number): string => percent.format(whole > 0 ? part / whole : 0);
export const formatClock = (ms: number): string => clock.format(ms);

/** "now", "12 seconds ago", "3 minutes ago", ... relative to `nowMs`. */
export function formatRelative(ms: number, nowMs: number = Date.now()): string {
  const seconds = Math.round((ms - nowMs) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relative.format(seconds, "second");
  if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

/** Sets a <time> element to a relative time, ISO on hover; `refreshTimes` keeps it current. */
export function setTime(el: HTMLTimeElement, ms: number): void {
  const iso = new Date(ms).toISOString();
  el.dateTime = iso;
  el.title = iso;
  el.dataset.ms = String(ms);
  el.textContent = formatRelative(ms);
}

/** Re-renders every relative <time> on the page (called once a second). */
export function refreshTimes(root: ParentNode = document): void {
  const now = Date.now();
  for (const el of root.querySelectorAll<HTMLTimeElement>("time[data-ms]")) {
    const text = formatRelative(Number(el.dataset.ms), now);
    if (el.textContent !== text) el.textContent = text;
  }
}
