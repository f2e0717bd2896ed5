// Accounts, for admins: grant a role, disable a user (their tokens stop
// working within the access-token lifetime; refresh stops at once).
import { useState } from "preact/hooks";
import { accounts } from "../api";
import { t } from "../i18n";
import { Empty, ErrorBox, Loading, useCall, when } from "../ui";

const roles = ["walker", "rider", "labeler", "enterprise", "admin"];

export function Users() {
  const list = useCall((signal) => accounts.listUsers({}, { signal }), []);
  const [err, setErr] = useState<unknown>();
  const [busy, setBusy] = useState("");

  async function act(id: string, f: () => Promise<unknown>) {
    setBusy(id);
    setErr(undefined);
    try {
      await f();
      list.reload();
    } catch (e) {
      setErr(e);
    } finally {
      setBusy("");
    }
  }

  if (list.error !== undefined) return <ErrorBox error={list.error} retry={list.reload} />;
  if (!list.data) return <Loading />;
  if (list.data.users.length === 0) return <Empty text={t("noUsers")} />;
  return (
    <div>
      {err !== undefined && <ErrorBox error={err} />}
      <div class="scroll">
        <table>
          <thead>
            <tr><th scope="col">{t("user")}</th><th scope="col">{t("email")}</th><th scope="col">{t("role")}</th><th scope="col">{t("status")}</th><th scope="col">{t("created")}</th></tr>
          </thead>
          <tbody>
            {list.data.users.map((u) => (
              <tr key={u.userId} data-user={u.email}>
                <td>{u.displayName || u.userId}</td>
                <td>{u.forgotten ? t("forgotten") : u.email}</td>
                <td>
                  <select aria-label={`${t("role")} ${u.email}`} value={u.role} disabled={busy === u.userId || u.forgotten}
                    onChange={(e) => { const role = e.currentTarget.value; act(u.userId, () => accounts.grantRole({ userId: u.userId, role })); }}>
                    {roles.map((r) => <option key={r} value={r}>{r}</option>)}
                  </select>
                </td>
                <td>
                  {u.disabled ? t("disabled") : (
                    <button type="button" disabled={busy === u.userId || u.forgotten} onClick={() => act(u.userId, () => accounts.disableUser({ userId: u.userId }))}>
                      {t("disableUser")}
                    </button>
                  )}
                </td>
                <td>{when(u.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
