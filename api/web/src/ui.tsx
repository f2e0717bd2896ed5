// Building blocks every page uses: calls and live streams as hooks, and
// the loading, error and empty states.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, code, message } from "./api";
import { locale, t } from "./i18n";

export interface Call<T> {
  data?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

// useCall runs f when deps change (and on reload) and keeps its answer.
export function useCall<T>(f: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Call<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [n, setN] = useState(0);
  useEffect(() => {
    const ac = new AbortController();
    setState((s) => ({ data: s.data, loading: true }));
    f(ac.signal).then(
      (data) => !ac.signal.aborted && setState({ data, loading: false }),
      (error) => !ac.signal.aborted && setState({ error, loading: false }),
    );
    return () => ac.abort();
  }, [...deps, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return { ...state, reload };
}

export interface Stream<T> {
  data?: T;
  error?: unknown;
  live: boolean;
}

// Errors a retry will not mend.
const final = new Set([Code.InvalidArgument, Code.PermissionDenied, Code.Unauthenticated, Code.Unimplemented, Code.FailedPrecondition]);

// useStream follows a server stream, keeping its last message; a broken
// stream is reopened with backoff (1 s doubling to 15 s) unless the error
// is final.
// Open streams, ended when the page goes away: a stream left open by a
// page being unloaded (or kept in the back-forward cache) holds one of
// the browser's six HTTP/1.1 connections to the server until it times
// out, and a few reloads would leave the next page waiting for one.
const streams = new Set<AbortController>();
addEventListener("pagehide", () => {
  for (const ac of streams) ac.abort();
  streams.clear();
});

export function useStream<T>(open: (signal: AbortSignal) => AsyncIterable<T>, deps: unknown[]): Stream<T> {
  const [state, setState] = useState<Stream<T>>({ live: false });
  useEffect(() => {
    const ac = new AbortController();
    streams.add(ac);
    let backoff = 1000;
    (async () => {
      while (!ac.signal.aborted) {
        try {
          for await (const m of open(ac.signal)) {
            backoff = 1000;
            setState({ data: m, live: true });
          }
        } catch (e) {
          if (ac.signal.aborted) return;
          setState((s) => ({ data: s.data, error: e, live: false }));
          const c = code(e);
          if (c !== undefined && final.has(c)) return;
        }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 15000);
      }
    })();
    return () => {
      streams.delete(ac);
      ac.abort();
    };
  }, deps);
  return state;
}

// usePoll calls f now and every ms while the page is visible.
export function usePoll(f: () => void, ms: number) {
  const ref = useRef(f);
  ref.current = f;
  useEffect(() => {
    const id = setInterval(() => document.visibilityState === "visible" && ref.current(), ms);
    return () => clearInterval(id);
  }, [ms]);
}

export function Loading() {
  return (
    <p class="state loading" role="status" aria-live="polite">
      {t("loading")}
    </p>
  );
}

export function ErrorBox({ error, retry }: { error: unknown; retry?: () => void }) {
  const c = code(error);
  return (
    <div class="state error" role="alert">
      <strong>{t("error")}</strong>
      {c !== undefined && <span class="code">{Code[c]}</span>}
      <span>{c === Code.PermissionDenied ? t("forbidden") : message(error)}</span>
      {retry && (
        <button type="button" onClick={retry}>
          {t("retry")}
        </button>
      )}
    </div>
  );
}

// Empty says what to do; text in backquotes is shown as a command.
export function Empty({ text }: { text: string }) {
  const parts = text.split(/(tideline [^.。]*)/);
  return (
    <p class="state empty">
      {parts.map((p, i) => (p.startsWith("tideline ") ? <code key={i}>{p}</code> : p))}
    </p>
  );
}

export function Card({ title, children, wide, id }: { title: string; children: ComponentChildren; wide?: boolean; id?: string }) {
  return (
    <section class={wide ? "card wide" : "card"} aria-labelledby={id} data-card={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

export function Stat({ label, value, id }: { label: string; value: string; id?: string }) {
  return (
    <div class="stat">
      <span class="label">{label}</span>
      <span class="value" data-stat={id}>
        {value}
      </span>
    </div>
  );
}

export function num(n: number | bigint): string {
  return Number(n).toLocaleString(locale());
}

export function won(n: number | bigint): string {
  return Number(n).toLocaleString(locale(), { style: "currency", currency: "KRW", maximumFractionDigits: 0 });
}

export function duration(sec: number): string {
  if (!sec) return "–";
  const m = Math.floor(sec / 60);
  const s = Math.round(sec % 60);
  return m ? `${m}m ${s}s` : `${s}s`;
}

export function when(ts: Timestamp | undefined): string {
  if (!ts) return "–";
  return timestampDate(ts).toLocaleString(locale(), { timeZone: "Asia/Seoul", dateStyle: "short", timeStyle: "short" });
}

// kstDate is today's date in Seoul, YYYY-MM-DD (the zone every read model uses).
export function kstDate(d = new Date()): string {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Seoul" }).format(d);
}

// Loaded shows a call's error (with a retry), then loading until its
// first answer, then either the empty state (when isEmpty says so) or
// what children make of the answer.
export function Loaded<T>({ call, isEmpty, empty, children }: { call: Call<T>; isEmpty: (d: T) => boolean; empty: string; children: (d: T) => ComponentChildren }) {
  return (
    <>
      {call.error !== undefined && <ErrorBox error={call.error} retry={call.reload} />}
      {call.data === undefined ? call.error === undefined && <Loading /> : isEmpty(call.data) ? <Empty text={empty} /> : children(call.data)}
    </>
  );
}
