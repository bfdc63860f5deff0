/**
 * Logging to stderr (libvirt captures it). Messages caused by the guest or the front-end go
 * through `guest()`, which is rate-limited per message key so a hostile guest cannot flood the log.
 */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };
export const LOG_LEVELS = Object.keys(ORDER) as LogLevel[];

let threshold = ORDER.info;
/** Who writes: the daemon, or its virgl render server (a child process on the same stderr). */
let name = 'vhost-gpu';
const GUEST_BURST = 20;
const GUEST_WINDOW_MS = 10_000;
const guestCounts = new Map<string, { start: number; count: number; dropped: number }>();

function write(level: LogLevel, msg: string): void {
  if (ORDER[level] > threshold) return;
  process.stderr.write(`${name} ${level}: ${msg}\n`);
}

export const log = {
  setLevel(level: LogLevel): void {
    threshold = ORDER[level];
  },
  setName(n: string): void {
    name = n;
  },
  get level(): LogLevel {
    return LOG_LEVELS.find((l) => ORDER[l] === threshold)!;
  },
  enabled(level: LogLevel): boolean {
    return ORDER[level] <= threshold;
  },
  error: (msg: string) => write('error', msg),
  warn: (msg: string) => write('warn', msg),
  info: (msg: string) => write('info', msg),
  debug: (msg: string) => write('debug', msg),
  /** A problem caused by guest or front-end input: logged as a warning, at most GUEST_BURST per key per window. */
  guest(key: string, msg: string): void {
    const now = Date.now();
    let c = guestCounts.get(key);
    if (!c || now - c.start > GUEST_WINDOW_MS) {
      if (c && c.dropped > 0) write('warn', `${key}: ${c.dropped} similar messages suppressed`);
      if (!c && guestCounts.size > 1000) guestCounts.clear();
      c = { start: now, count: 0, dropped: 0 };
      guestCounts.set(key, c);
    }
    if (++c.count <= GUEST_BURST) write('warn', msg);
    else c.dropped++;
  },
};

/** The message of something thrown (an Error's message, anything else as text), for log lines. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
