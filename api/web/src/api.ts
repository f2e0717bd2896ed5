// Connect clients of every service the console calls, over one transport
// to the server that served the page. Each call carries the session's
// access token, renewed (single flight) a minute before it expires.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AccountService } from "./gen/tideline/accounts/v1/accounts_pb";
import type { Session as SessionPB } from "./gen/tideline/accounts/v1/accounts_pb";
import { AdminService } from "./gen/tideline/admin/v1/admin_pb";
import { DashboardService } from "./gen/tideline/dashboard/v1/dashboard_pb";
import { DatasetService } from "./gen/tideline/labeling/v1/labeling_pb";
import { SafetyService } from "./gen/tideline/safety/v1/safety_pb";
import { StepsService } from "./gen/tideline/steps/v1/steps_pb";
import { StoryService } from "./gen/tideline/story/v1/story_pb";
import { session, setSession, type Session } from "./session";

export function toSession(s: SessionPB | undefined): Session {
  if (!s) throw new Error("the server sent no session");
  return {
    access: s.accessToken,
    accessExpires: s.accessExpiresAt ? timestampMs(s.accessExpiresAt) : Date.now() + 60_000,
    refresh: s.refreshToken,
    userId: s.userId,
    role: s.role,
  };
}

// Calls that need no token (and must not renew one).
const open = new Set(["SignUp", "Login", "Refresh"]);

let renewing: Promise<string> | null = null;

async function accessToken(): Promise<string> {
  const s = session.get();
  if (!s) throw new ConnectError("not signed in", Code.Unauthenticated);
  if (s.accessExpires - Date.now() > 60_000 || !s.refresh) return s.access;
  renewing ??= (async () => {
    try {
      const res = await accounts.refresh({ refreshToken: s.refresh });
      const next = toSession(res.session);
      setSession(next);
      return next.access;
    } catch (e) {
      setSession(null); // a refused refresh (reused, revoked, disabled) signs out
      throw e;
    } finally {
      renewing = null;
    }
  })();
  return renewing;
}

const auth: Interceptor = (next) => async (req) => {
  if (!open.has(req.method.name)) {
    req.header.set("Authorization", "Bearer " + (await accessToken()));
  }
  try {
    return await next(req);
  } catch (e) {
    const err = ConnectError.from(e);
    // A token the server no longer takes (revoked, user disabled): sign out.
    if (err.code === Code.Unauthenticated && !open.has(req.method.name) && session.get()) setSession(null);
    throw err;
  }
};

const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [auth] });

export const accounts = createClient(AccountService, transport);
export const admin = createClient(AdminService, transport);
export const dashboard = createClient(DashboardService, transport);
export const datasets = createClient(DatasetService, transport);
export const safety = createClient(SafetyService, transport);
export const steps = createClient(StepsService, transport);
export const stories = createClient(StoryService, transport);

// message returns what a person should read of an error.
export function message(e: unknown): string {
  if (e instanceof ConnectError) return e.rawMessage || Code[e.code];
  if (e instanceof Error) return e.message;
  return String(e);
}

export function code(e: unknown): Code | undefined {
  return e instanceof ConnectError ? e.code : undefined;
}

export { Code, ConnectError };
