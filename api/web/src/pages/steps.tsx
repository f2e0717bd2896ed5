// The step ranking of a date, live (WatchLeaderboard); a walker also sees
// their own place.
import { useState } from "preact/hooks";
import { steps } from "../api";
import { t } from "../i18n";
import { session } from "../session";
import { useValue } from "../state";
import { Empty, ErrorBox, Loading, kstDate, num, useStream } from "../ui";

export function Steps() {
  const s = useValue(session);
  const [date, setDate] = useState(kstDate());
  const me = s?.role === "walker" ? s.userId : "";
  const w = useStream((signal) => steps.watchLeaderboard({ date, limit: 50, userId: me }, { signal }), [date, me]);
  const lb = w.data?.leaderboard;
  return (
    <div>
      <label class="inline">
        {t("date")} <input type="date" value={date} onChange={(e) => e.currentTarget.value && setDate(e.currentTarget.value)} />
      </label>
      <p class="live" role="status" aria-live="polite"><span class={w.live ? "dot on" : "dot"} aria-hidden="true" /> {w.live ? t("live") : t("reconnecting")}</p>
      {w.error !== undefined && !w.live && <ErrorBox error={w.error} />}
      {!lb ? (
        w.error === undefined && <Loading />
      ) : lb.top.length === 0 ? (
        <Empty text={t("noSteps")} />
      ) : (
        <div class="scroll">
          <table data-steps={lb.top.length}>
            <thead>
              <tr><th scope="col">{t("rank")}</th><th scope="col">{t("user")}</th><th scope="col">{t("stepsCount")}</th></tr>
            </thead>
            <tbody>
              {lb.top.map((e) => (
                <tr key={e.userId} class={e.userId === me ? "sel" : ""}>
                  <td>{String(e.rank)}</td>
                  <td>{e.userId}</td>
                  <td>{num(e.steps)}</td>
                </tr>
              ))}
              {lb.me && !lb.top.some((e) => e.userId === me) && (
                <tr class="sel">
                  <td>{String(lb.me.rank)}</td>
                  <td>{lb.me.userId}</td>
                  <td>{num(lb.me.steps)}</td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
