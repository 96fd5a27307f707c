// Header: total cases, connection indicator and "last updated".

import type { Summary } from "../api";
import { byTestId, setText } from "../dom";
import { formatCount, formatRate, setTime } from "../format";

export type ConnectionState = "live" | "reconnecting" | "offline";

const CONNECTION_HINT: Record<ConnectionState, string> = {
  live: "Receiving live updates",
  reconnecting: "Connection lost; reconnecting and showing the last data received",
  offline: "Not connected; showing the last data received",
};

export function createHeader() {
  const total = byTestId("total");
  const rate = byTestId("total-rate");
  const connection = byTestId("connection");
  const updated = byTestId<HTMLTimeElement>("last-updated");

  return {
    update(summary: Summary): void {
      setText(total, formatCount(summary.total));
      setText(rate, `${formatRate(summary.rate.total)} cases/s over the last ${formatCount(summary.rate.window_s)} s`);
      if (summary.updated_ms === null) {
        delete updated.dataset.ms;
        updated.removeAttribute("datetime");
        updated.removeAttribute("title");
        setText(updated, "never");
      } else {
        setTime(updated, summary.updated_ms);
      }
    },

    setConnection(state: ConnectionState): void {
      connection.dataset.state = state;
      connection.title = CONNECTION_HINT[state];
      setText(connection, state);
    },
  };
}
