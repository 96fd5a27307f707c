// Top 3 infected areas: a ranked list with counts and a proportional bar.

import type { Area } from "../api";
import { byTestId, el } from "../dom";
import { formatCount } from "../format";

export function createAreasSection() {
  const list = byTestId<HTMLOListElement>("top-areas");
  const empty = byTestId("top-areas-empty");

  return {
    update(areas: Area[]): void {
      const top = areas.slice(0, 3);
      const max = Math.max(1, ...top.map((a) => a.cases));
      list.replaceChildren(
        ...top.map((area) => {
          const bar = el("span", { className: "bar" });
          bar.style.setProperty("--share", String(area.cases / max));
          bar.setAttribute("aria-hidden", "true");
          return el(
            "li",
            {},
            el("span", { className: "area-name", testid: "area-name", text: area.location }),
            el("span", { className: "area-cases num", testid: "area-cases", text: formatCount(area.cases) }),
            bar,
          );
        }),
      );
      empty.hidden = top.length > 0;
    },
  };
}
