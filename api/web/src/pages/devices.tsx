// The registered edge devices and whether each is connected now.
import { admin, Code, code } from "../api";
import { t } from "../i18n";
import { Empty, ErrorBox, Loading, useCall, usePoll, when } from "../ui";

export function Devices() {
  const list = useCall((signal) => admin.listDevices({}, { signal }), []);
  usePoll(list.reload, 5000);
  if (code(list.error) === Code.Unavailable) return <Empty text={t("noLeaf")} />;
  if (list.error !== undefined) return <ErrorBox error={list.error} retry={list.reload} />;
  if (!list.data) return <Loading />;
  if (list.data.devices.length === 0) return <Empty text={t("noDevices")} />;
  return (
    <div class="scroll">
      <table>
        <thead>
          <tr><th scope="col">{t("device")}</th><th scope="col">{t("rider")}</th><th scope="col">{t("status")}</th><th scope="col">{t("created")}</th></tr>
        </thead>
        <tbody>
          {list.data.devices.map((d) => (
            <tr key={d.deviceId}>
              <td>{d.deviceId}</td>
              <td>{d.riderId}</td>
              <td>{d.revoked ? `${t("revoked")} ${when(d.revokedAt)}` : d.connected ? t("connected") : t("offline")}</td>
              <td>{when(d.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
