// Safety alerts, newest first, with acknowledge. The list is read again
// every 3 s, and at once after an acknowledgement (reading its own write).
import { useState } from "preact/hooks";
import { safety } from "../api";
import { Severity } from "../gen/tideline/safety/v1/events_pb";
import { t } from "../i18n";
import { ErrorBox, Loaded, useCall, usePoll, when } from "../ui";

export function Alerts() {
  const [openOnly, setOpenOnly] = useState(true);
  const [minPos, setMinPos] = useState(0n);
  const [busy, setBusy] = useState("");
  const [ackErr, setAckErr] = useState<unknown>();
  const list = useCall((signal) => safety.listAlerts({ openOnly, limit: 100, minPosition: minPos }, { signal }), [openOnly, minPos]);
  usePoll(list.reload, 3000);

  async function ack(id: string) {
    setBusy(id);
    setAckErr(undefined);
    try {
      const res = await safety.acknowledgeAlert({ alertId: id });
      setMinPos(res.position);
    } catch (e) {
      setAckErr(e);
    } finally {
      setBusy("");
    }
  }

  return (
    <div>
      <label class="inline">
        <input type="checkbox" checked={openOnly} onChange={(e) => setOpenOnly(e.currentTarget.checked)} /> {t("openOnly")}
      </label>
      {ackErr !== undefined && <ErrorBox error={ackErr} />}
      <Loaded call={list} isEmpty={(d) => d.alerts.length === 0} empty={t("noAlerts")}>{(d) => (
        <div class="scroll">
          <table data-alerts={String(d.total)}>
            <thead>
              <tr><th scope="col">{t("raised")}</th><th scope="col">{t("rider")}</th><th scope="col">{t("severity")}</th><th scope="col">{t("status")}</th><th scope="col"><span class="sr">{t("acknowledge")}</span></th></tr>
            </thead>
            <tbody>
              {d.alerts.map((a) => {
                const r = a.raisedV2!;
                return (
                  <tr key={r.alertId} data-alert={r.alertId}>
                    <td>{when(r.raisedAt)}</td>
                    <td>{r.riderId}</td>
                    <td><span class={"sev s" + r.severity}>{Severity[r.severity]}</span> {r.reason}</td>
                    <td>{a.acknowledged ? `${t("acknowledged")} (${a.acknowledged.by})` : "–"}</td>
                    <td>
                      {!a.acknowledged && (
                        <button type="button" disabled={busy === r.alertId} onClick={() => ack(r.alertId)}>
                          {t("acknowledge")}
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}</Loaded>
    </div>
  );
}
