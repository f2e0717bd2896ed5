// A value components can follow: useValue(s) re-renders on each set.
import { useEffect, useState } from "preact/hooks";

export interface Signal<T> {
  get(): T;
  set(v: T): void;
  subscribe(f: (v: T) => void): () => void;
}

export function signal<T>(v: T): Signal<T> {
  const subs = new Set<(v: T) => void>();
  return {
    get: () => v,
    set(nv: T) {
      v = nv;
      for (const f of [...subs]) f(v);
    },
    subscribe(f) {
      subs.add(f);
      return () => subs.delete(f);
    },
  };
}

export function useValue<T>(s: Signal<T>): T {
  const [v, setV] = useState(s.get());
  useEffect(() => {
    setV(s.get());
    return s.subscribe(setV);
  }, [s]);
  return v;
}
