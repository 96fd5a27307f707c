// Coalesces bursts of triggers (snapshots arrive up to a few per second) into
// at most one run of an async task per interval, never two at once, and always
// one run after the last trigger.

export function throttled(task: () => Promise<void>, intervalMs: number): () => void {
  let running = false;
  let pending = false;
  let lastStart = -Infinity;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const run = async (): Promise<void> => {
    timer = undefined;
    running = true;
    pending = false;
    lastStart = Date.now();
    try {
      await task();
    } finally {
      running = false;
      if (pending) trigger();
    }
  };

  function trigger(): void {
    if (running) {
      pending = true;
      return;
    }
    if (timer !== undefined) return;
    const wait = Math.max(0, lastStart + intervalMs - Date.now());
    timer = setTimeout(() => void run(), wait);
  }

  return trigger;
}
