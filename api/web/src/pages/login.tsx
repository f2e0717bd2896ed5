// Log in, sign up (walker, rider or labeler), or paste an operator token.
import { useState } from "preact/hooks";
import { accounts, Code, code, message, toSession } from "../api";
import { fromToken, setSession } from "../session";
import { t } from "../i18n";

type Mode = "login" | "signup" | "token";

export function Login() {
  const [mode, setMode] = useState<Mode>("login");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [role, setRole] = useState("walker");
  const [totp, setTotp] = useState("");
  const [needTotp, setNeedTotp] = useState(false);
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState("");
  const [note, setNote] = useState("");

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setErr("");
    setNote("");
    try {
      if (mode === "token") {
        setSession(fromToken(token));
      } else if (mode === "signup") {
        await accounts.signUp({ email, password, role, displayName: name });
        setPassword("");
        setMode("login");
        setNote(t("signedUp"));
      } else {
        const res = await accounts.login({ email, password, totpCode: totp });
        setSession(toSession(res.session));
      }
    } catch (e) {
      if (mode === "login" && code(e) === Code.Unauthenticated && /TOTP/.test(message(e))) {
        setNeedTotp(true);
        if (!totp) {
          setErr(t("totpNeeded"));
          return;
        }
      }
      setErr(message(e));
    } finally {
      setBusy(false);
    }
  }

  const tab = (m: Mode, label: string) => (
    <button type="button" role="tab" data-tab={m} aria-selected={mode === m} class={mode === m ? "tab on" : "tab"} onClick={() => { setMode(m); setErr(""); }}>
      {label}
    </button>
  );

  return (
    <main id="main" class="login">
      <h1>{t("appName")}</h1>
      <div role="tablist" class="tabs">
        {tab("login", t("signIn"))}
        {tab("signup", t("signUp"))}
        {tab("token", t("useToken"))}
      </div>
      <form onSubmit={submit} aria-busy={busy} data-form={mode}>
        {mode === "token" ? (
          <label>
            {t("token")}
            <textarea name="token" rows={4} required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
            <small>{t("tokenHint")}</small>
          </label>
        ) : (
          <>
            <label>
              {t("email")}
              <input name="email" type="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
            </label>
            <label>
              {t("password")}
              <input name="password" type="password" autocomplete={mode === "signup" ? "new-password" : "current-password"} required minLength={mode === "signup" ? 10 : undefined}
                value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
              {mode === "signup" && <small>{t("passwordHint")}</small>}
            </label>
          </>
        )}
        {mode === "signup" && (
          <>
            <label>
              {t("displayName")}
              <input name="display_name" autocomplete="name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <label>
              {t("role")}
              <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
                <option value="walker">walker</option>
                <option value="rider">rider</option>
                <option value="labeler">labeler</option>
              </select>
            </label>
          </>
        )}
        {mode === "login" && needTotp && (
          <label>
            {t("totpCode")}
            <input name="totp" inputMode="numeric" autocomplete="one-time-code" value={totp} onInput={(e) => setTotp(e.currentTarget.value)} />
          </label>
        )}
        {err && <p class="state error" role="alert">{err}</p>}
        {note && <p class="state ok" role="status">{note}</p>}
        <button type="submit" class="primary" disabled={busy}>
          {mode === "signup" ? t("signUp") : t("signIn")}
        </button>
      </form>
    </main>
  );
}
