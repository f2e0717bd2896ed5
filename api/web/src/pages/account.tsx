// The signed-in user's own account: two-factor log-in (TOTP) on and off.
import { useState } from "preact/hooks";
import { accounts } from "../api";
import { t } from "../i18n";
import { session } from "../session";
import { useValue } from "../state";
import { Card, ErrorBox } from "../ui";

export function Account() {
  const s = useValue(session);
  const [uri, setUri] = useState("");
  const [secret, setSecret] = useState("");
  const [code, setCode] = useState("");
  const [codes, setCodes] = useState<string[]>([]);
  const [err, setErr] = useState<unknown>();
  const [done, setDone] = useState("");

  async function run(f: () => Promise<void>) {
    setErr(undefined);
    setDone("");
    try {
      await f();
    } catch (e) {
      setErr(e);
    }
  }

  return (
    <div class="grid">
      <Card title={t("signedInAs")} id="me">
        <p>{s?.userId} · {s?.role}</p>
      </Card>
      <Card title={t("secondFactor")} id="totp">
        {err !== undefined && <ErrorBox error={err} />}
        {done && <p class="state ok" role="status">{done}</p>}
        {!uri ? (
          <button type="button" data-action="totp-on" onClick={() => run(async () => { const r = await accounts.enrolTOTP({}); setUri(r.otpauthUri); setSecret(r.secret); })}>
            {t("enrol")}
          </button>
        ) : (
          <div>
            <p>{t("totpUri")}</p>
            <p><code class="wrap" data-otpauth>{uri}</code></p>
            <p><code data-secret>{secret}</code></p>
          </div>
        )}
        <form onSubmit={(e) => { e.preventDefault(); run(async () => {
          if (uri) {
            const r = await accounts.verifyTOTP({ code });
            setCodes(r.recoveryCodes);
            setUri("");
            setDone(t("totpOn"));
          } else {
            await accounts.disableTOTP({ code });
            setCodes([]);
            setDone(t("totpOff"));
          }
          setCode("");
        }); }}>
          <label>
            {t("totpCode")}
            <input name="code" inputMode="numeric" autocomplete="one-time-code" required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </label>
          <button type="submit" data-action={uri ? "totp-confirm" : "totp-off"}>{uri ? t("verify") : t("disable")}</button>
        </form>
        {codes.length > 0 && (
          <div>
            <p>{t("recoveryCodes")}</p>
            <ul class="codes">{codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul>
          </div>
        )}
      </Card>
    </div>
  );
}
