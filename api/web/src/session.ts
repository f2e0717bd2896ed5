// The signed-in user: the access token (a 15-minute JWT) and the refresh
// token, kept in sessionStorage so a reload keeps the tab signed in and
// closing it signs out. The access token is renewed before it expires; a
// refresh that fails signs out.
import { signal } from "./state";

export interface Session {
  access: string;
  accessExpires: number; // ms since epoch
  refresh: string; // empty for an operator token
  userId: string;
  role: string;
}

const key = "tideline.session";

function load(): Session | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(key) ?? "null") as Session | null;
    if (!s || typeof s.access !== "string") return null;
    if (!s.refresh && s.accessExpires < Date.now()) return null;
    return s;
  } catch {
    return null;
  }
}

export const session = signal<Session | null>(load());

export function setSession(s: Session | null) {
  if (s) sessionStorage.setItem(key, JSON.stringify(s));
  else sessionStorage.removeItem(key);
  session.set(s);
}

// fromToken reads an operator token's subject, role and expiry (the
// server checks its signature on every call).
export function fromToken(token: string): Session {
  const parts = token.trim().split(".");
  if (parts.length !== 3) throw new Error("not a JWT: want three dot-separated parts");
  let claims: { sub?: string; role?: string; exp?: number };
  try {
    claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    throw new Error("not a JWT: its payload is not JSON");
  }
  if (!claims.sub || !claims.role || !claims.exp) throw new Error("the token has no sub, role or exp");
  if (claims.exp * 1000 < Date.now()) throw new Error("the token has expired");
  return { access: token.trim(), accessExpires: claims.exp * 1000, refresh: "", userId: claims.sub, role: claims.role };
}
